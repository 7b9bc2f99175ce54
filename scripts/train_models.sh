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
train() {  # train OUT RECIPE ARGS...: run the recipe (common/recipes.py) with this run's paths, unless OUT exists
  local out=$1 recipe=$2; shift 2
  if [ -f "$out" ]; then log "skip $out (exists)"; return; fi
  local t0 module flags; t0=$(stamp)
  module=$("$PY" -m common.recipes command "$recipe")
  flags=$("$PY" -m common.recipes args "$recipe")
  log "start $out ($recipe)"
  # shellcheck disable=SC2086 # the recipe's flags are one word each
  "$PY" -m "$module" $flags "$@" --out "$out" > "${out%.safetensors}.out" 2>&1
  log "done $out in $(( $(stamp) - t0 )) s"
}

[ -d "$DATA" ] || "$PY" -m domains.build --photos assets/photos --out "$DATA" --seed 0

# 1. the default harmonizer family, on all domains: the gated colour transform (harmonizers.gct),
#    fresh pairs from every process with 80 % of them unperturbed, every pair re-graded; the gate's
#    scale is cross-fitted over 5 folds of the training photos (--calibrate_folds: 6 trainings,
#    about 20 minutes here)
train "$R/gct_all.safetensors" gct_all --data "$DATA"
# 2. per-domain harmonizers: the base finetuned on the domain, fresh pairs from the domain's own
#    processes, the gate's scale cross-fitted over 5 folds of the domain's photos (scale 0 = leave
#    that domain alone; about 7 minutes a domain here)
declare -A PROC=([MiniCOCO]=reinhard+xiao+histogram+pitie [MiniAdobe]=expert
                 [MiniFlickr]=reinhard+xiao+histogram+pitie [MiniDay2night]=illumination)
for D in MiniCOCO MiniAdobe MiniFlickr MiniDay2night; do
  train "$R/gct_$D.safetensors" gct_domain --domain "$D" --data "$DATA" --runs "$R" \
    --augment "processes:0.8:${PROC[$D]}"
done
# 3. domain classifier: tf_efficientnet_lite0 kept as ImageNet trained it, a linear head fitted on
#    its pooled multi-scale features of the stored composites (the benchmark's domains differ by
#    content and process, as iHarmony4's do), each source of photos weighing the same inside its
#    domain, MiniFlickr's composites taken to night as extra MiniDay2night rows; about a minute
train "$R/router.safetensors" router --data "$DATA"
# 3b. the composite detector (router.detect): the bundled photos and cut-outs, the benchmark's
#    training composites; LABELME=/path/to/labelme adds its photos and real composites (as shipped)
LM=${LABELME:-}
train "$R/detector.safetensors" detector --data "$DATA" --photos "assets/photos${LM:+,$LM/photos}" \
  ${LM:+--composites "$LM/composites"}
# 4. the default zoo (float16 storage); the unified model is the all-domain one; its default mode is
#    soft (router.zoo build picks it: the domain models share one size; eval.probes modes compares)
if [ ! -f models/default/zoo.json ] || [ "${REBUILD_ZOO:-0}" = 1 ]; then
  "$PY" -m router.zoo build --out models/default --classifier "$R/router.safetensors" \
    --unified "$R/gct_all.safetensors" \
    --domains "MiniCOCO=$R/gct_MiniCOCO.safetensors,MiniAdobe=$R/gct_MiniAdobe.safetensors,MiniFlickr=$R/gct_MiniFlickr.safetensors,MiniDay2night=$R/gct_MiniDay2night.safetensors" \
    --detector "$R/detector.safetensors" --fp16 --overwrite
  log "zoo built"
fi
# 5. the pixel-predicting families at about the same CPU budget as step 1 (the README's side-by-side table)
train "$R/issam_all.safetensors" issam_all --data "$DATA"
train "$R/rainnet_all.safetensors" rainnet_all --data "$DATA"
# 6. SycoNet on all domains (encoders at 64 px, LUT loss at 128 px), then per small domain
train "$R/syconet_all.safetensors" syconet_all --data "$DATA"
for D in MiniFlickr MiniDay2night; do
  train "$R/syconet_$D.safetensors" syconet_domain --data "$DATA" --domains "$D" --init "$R/syconet_all.safetensors"
done
# 7. iS2AM per domain with SycoNet augmentation (Table 1 rows 5 and 7) and the SycoNet-augmented
#    unified iS2AM (section 4.7)
for D in MiniFlickr MiniDay2night; do
  train "$R/issam_$D.safetensors" issam_domain --domain "$D" --data "$DATA" --runs "$R"
done
train "$R/issam_unified.safetensors" issam_unified --data "$DATA" --init "$R/issam_all.safetensors" \
  --augment "syconet:$R/syconet_all.safetensors"
# the all-domain SycoNet, generation-only, for `python -m syconet.sample` out of the box
[ -f models/syconet_all.safetensors ] || "$PY" -m syconet.export --ckpt "$R/syconet_all.safetensors" \
  --out models/syconet_all.safetensors
# 8. SycoNet ablations (Table 2): each trained from scratch on MiniDay2night with the same budget
for A in none no_rec no_real move_z lutv2; do
  train "$R/ablation_$A.safetensors" syconet_ablation --data "$DATA" --domains MiniDay2night --ablation "$A"
done
# 9. GPU only, when IHARMONY4 names the data set: HRNet18 + iDIH256 by the official recipe, its
#    backbone from ImageNet weights when HRNET_IMAGENET names hrnetv2_w18_imagenet_pretrained.pth
if [ -n "${IHARMONY4:-}" ]; then
  HW=${HRNET_IMAGENET:-}
  train "$R/hrnet18_idih256_iharmony4.safetensors" hrnet18_idih256_gpu --data "$IHARMONY4" ${HW:+--pretrained_file "$HW"}
fi
log "all done"
