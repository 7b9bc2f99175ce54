#!/usr/bin/env bash
# Train everything the default zoo and the README's figures need, on the offline benchmark, on CPU.
# Each stage skips when its output exists, and every training resumes from its last checkpoint, so
# the script can be stopped and started again. Times in the README were measured on the 2-core
# development machine. Run: make models  (or bash scripts/train_models.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-data/mini4}
R=${RUNS:-runs}
mkdir -p "$R"
stamp() { date +%s; }
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$R/pipeline.log"; }
train() {  # train OUT MODULE ARGS...: run unless OUT exists, log the wall time
  local out=$1; shift
  if [ -f "$out" ]; then log "skip $out (exists)"; return; fi
  local t0; t0=$(stamp)
  log "start $out"
  "$PY" -m "$@" --out "$out" > "${out%.safetensors}.out" 2>&1
  log "done $out in $(( $(stamp) - t0 )) s"
}

[ -d "$DATA" ] || "$PY" -m domains.build --photos assets/photos --out "$DATA" --seed 0

# 1. SycoNet on all domains (encoders at 64 px, LUT loss at 128 px)
train "$R/syconet_all.safetensors" syconet.train --data "$DATA" --domains all --size 128 --enc_size 64 \
  --steps 1500 --batch_size 16 --lr 3e-4
# 2. domain classifier (tf_efficientnet_lite0 from ImageNet weights, composite + mask), trained on
#    fresh composites made by each domain's process (router.synth)
train "$R/router.safetensors" router.train --data "$DATA" --size 128 --steps 300 --batch_size 16 --lr 3e-4 \
  --synthesize --workers 1
# 3. base harmonizer on all domains (iS2AM, improved_ssam configuration at 64 px)
train "$R/issam_all.safetensors" harmonizers.train --data "$DATA" --domains all --arch issam64 \
  --steps 300 --batch_size 16 --lr 5e-4
# 4. SycoNet finetuned per domain
for D in MiniFlickr MiniDay2night; do
  train "$R/syconet_$D.safetensors" syconet.train --data "$DATA" --domains "$D" \
    --init "$R/syconet_all.safetensors" --size 128 --steps 100 --batch_size 16 --lr 1e-4
done
# 5. per-domain harmonizers: finetune the base with originals + SycoNet augmentation: the domain's
#    finetuned SycoNet for the two small domains (Table 1 row 7), the all-domain one for the large (row 5)
for D in MiniFlickr MiniDay2night; do
  train "$R/issam_$D.safetensors" domains.finetune --domain "$D" --data "$DATA" --runs "$R" \
    --steps 60 --batch_size 8 --lr 1e-4
done
for D in MiniCOCO MiniAdobe; do
  train "$R/issam_$D.safetensors" domains.finetune --domain "$D" --data "$DATA" --runs "$R" --row 5 \
    --steps 60 --batch_size 8 --lr 1e-4
done
# 6. unified harmonizer: the base finetuned on all domains with the all-domain SycoNet (section 4.7)
train "$R/issam_unified.safetensors" harmonizers.train --data "$DATA" --domains all --init "$R/issam_all.safetensors" \
  --augment "syconet:$R/syconet_all.safetensors" --steps 100 --batch_size 8 --lr 1e-4
# 7. the default zoo (float16 storage)
if [ ! -f models/default/zoo.json ] || [ "${REBUILD_ZOO:-0}" = 1 ]; then
  "$PY" -m router.zoo build --out models/default --classifier "$R/router.safetensors" \
    --unified "$R/issam_unified.safetensors" \
    --domains "MiniCOCO=$R/issam_MiniCOCO.safetensors,MiniAdobe=$R/issam_MiniAdobe.safetensors,MiniFlickr=$R/issam_MiniFlickr.safetensors,MiniDay2night=$R/issam_MiniDay2night.safetensors" \
    --fp16 --overwrite
  log "zoo built"
fi
# the all-domain SycoNet, generation-only, for `python -m syconet.sample` out of the box
[ -f models/syconet_all.safetensors ] || "$PY" -m syconet.export --ckpt "$R/syconet_all.safetensors" \
  --out models/syconet_all.safetensors
# 8. RainNet base (for the harmonizer table)
train "$R/rainnet_all.safetensors" harmonizers.train --data "$DATA" --domains all --arch rainnet64 \
  --steps 300 --batch_size 16 --lr 5e-4
# 9. SycoNet ablations (Table 2): each trained from scratch on MiniDay2night with the same budget
for A in none no_rec no_real move_z lutv2; do
  train "$R/ablation_$A.safetensors" syconet.train --data "$DATA" --domains MiniDay2night --ablation "$A" \
    --size 128 --enc_size 64 --steps 100 --batch_size 16 --lr 3e-4
done
log "all done"
