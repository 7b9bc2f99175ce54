#!/usr/bin/env bash
# The shipped zoo's models retrained on benchmark v3 (the bundled photos + the LabelMe photos), and
# the side-by-side measurement against the v2 zoo on photos and composites of sources neither saw.
# Needs the LabelMe folders (LABELME=/path/to/labelme; their README says where they come from).
# Resumable: each stage skips when its output exists. About 70 minutes on a 2-core CPU.
#   LABELME=/path/to/labelme bash scripts/train_v3.sh
# MODERN (default assets/photos) is the folder of modern photos, V3_DATA and V2_DATA the benchmarks
# built with and without LabelMe, MEASURE=0 stops after the zoos (scripts/modern_unseen.sh uses them).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
LM=${LABELME:?set LABELME to the LabelMe folder (photos/, composites/)}
R=${RUNS:-runs/v3}
S=runs/lm_split   # the split's folders (v3's manifest records them: keep the path)
MODERN=${MODERN:-assets/photos}
DV3=${V3_DATA:-data/v3}
DV2=${V2_DATA:-data/mini4}
mkdir -p "$R"
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$R/pipeline.log"; }
step() {  # step OUT COMMAND...: run COMMAND unless OUT exists
  local out=$1; shift
  if [ -e "$out" ]; then log "skip $out (exists)"; return; fi
  local t0; t0=$(date +%s); log "start $out"
  "$@" > "$R/$(basename "${out%.*}").out" 2>&1
  log "done $out in $(( $(date +%s) - t0 )) s"
}

# 0. data: LabelMe's sources split (18 of 75 held back, with the composites on their photos); v3 =
#    bundled + the other sources; lm_unseen = the held-back sources' photos alone; v2 for comparison.
#    LabelMe's photos are outdoor scenes: MiniFlickr by the subject rule, whatever region a mask outlines
step "$S" "$PY" scripts/holdout_split.py --photos "$LM/photos" --composites "$LM/composites" --out "$S"
step "$DV3" "$PY" -m domains.build --photos "$MODERN,$S/train/photos=MiniFlickr" --out "$DV3" --seed 0
step data/lm_unseen "$PY" -m domains.build --photos "$S/test/photos=MiniFlickr" --out data/lm_unseen --seed 0
step "$DV2" "$PY" -m domains.build --photos "$MODERN" --out "$DV2" --seed 0

# 1. harmonizers: the shipped recipes, each photo folder weighing the same in the batches and in
#    the gate scale's calibration (on 10 % of the training photos held out)
CAL=(--val_every 1000 --val_fraction 0.1 --balance collection --workers 0)
#    (FINETUNE_FOLDS=5 chooses the finetunes' scales by cross-fitting instead, 6 trainings each)
#    (ARCH=gct64w trains another family: the finetunes inherit the all-domain model's)
step "$R/gct_all.safetensors" "$PY" -m harmonizers.train $("$PY" -m common.recipes args gct_all) --calibrate_folds 0 "${CAL[@]}" \
  ${ARCH:+--arch "$ARCH"} --data "$DV3" --out "$R/gct_all.safetensors"
declare -A PROC=([MiniCOCO]=reinhard+xiao+histogram+pitie [MiniAdobe]=expert
                 [MiniFlickr]=reinhard+xiao+histogram+pitie [MiniDay2night]=illumination)
for D in MiniCOCO MiniAdobe MiniFlickr MiniDay2night; do
  step "$R/gct_$D.safetensors" "$PY" -m domains.finetune "$D" $("$PY" -m common.recipes args gct_domain) \
    --calibrate_folds "${FINETUNE_FOLDS:-0}" "${CAL[@]}" --data "$DV3" --base "$R/gct_all.safetensors" --augment "processes:0.8:${PROC[$D]}" \
    --out "$R/gct_$D.safetensors"
done
# 2. the router on v3 (the shipped recipe: each source weighing the same inside its domain; MiniFlickr
#    relit as night rows only from the photo folder that holds night photos, --relight_from night_folders)
step "$R/router.safetensors" "$PY" -m router.train $("$PY" -m common.recipes args router) --data "$DV3" \
  --out "$R/router.safetensors"
# 3. a detector that never saw the held-back sources, for the measurement (the shipped one saw them)
step "$R/detector_h.safetensors" "$PY" -m router.detect $("$PY" -m common.recipes args detector) --data "$DV2" \
  --photos "$MODERN,$S/train/photos" --composites "$S/train/composites" \
  --out "$R/detector_h.safetensors"

# 4. zoos: v3 as shipped (with the shipped detector), and both v2 and v3 with the held-out detector
DOM=""; for D in MiniCOCO MiniAdobe MiniFlickr MiniDay2night; do DOM+="${DOM:+,}$D=$R/gct_$D.safetensors"; done
zoo() {  # zoo OUT CLASSIFIER UNIFIED DOMAINS DETECTOR
  step "$1" "$PY" -m router.zoo build --out "$1" --classifier "$2" --unified "$3" --domains "$4" --detector "$5" --fp16
}
zoo "$R/zoo_v3" "$R/router.safetensors" "$R/gct_all.safetensors" "$DOM" models/default/detector.safetensors
zoo "$R/zoo_v3_h" "$R/router.safetensors" "$R/gct_all.safetensors" "$DOM" "$R/detector_h.safetensors"
if [ "${MEASURE:-1}" = 0 ]; then log "all done (MEASURE=0)"; exit 0; fi
# the previous zoo (trained on the bundled photos alone): PREVIOUS_ZOO names its folder, else it is
# taken from the revision that last shipped it
V2=${PREVIOUS_ZOO:-$R/previous_zoo/models/default}
if [ ! -d "$V2" ]; then
  mkdir -p "$R/previous_zoo" && git archive b6be775 models/default | tar -x -C "$R/previous_zoo"
fi
zoo "$R/zoo_v2_h" "$V2/classifier.safetensors" "$V2/harmonizer_unified.safetensors" \
  "MiniCOCO=$V2/harmonizer_MiniCOCO.safetensors,MiniAdobe=$V2/harmonizer_MiniAdobe.safetensors,MiniFlickr=$V2/harmonizer_MiniFlickr.safetensors,MiniDay2night=$V2/harmonizer_MiniDay2night.safetensors" \
  "$R/detector_h.safetensors"

# 5. side by side: synthetic composites (official protocol) of v3's test split, v2's test split and
#    the held-back sources; real composites and real photos of sources neither saw
for Z in v2_h v3_h; do
  for B in v3 mini4 lm_unseen; do
    step "$R/bench_${Z}_$B" "$PY" -m eval.benchmark --data "data/$B" --zoo "$R/zoo_$Z" --out "$R/bench_${Z}_$B" \
      --methods unified,default
  done
done
step "$R/photos_mini4_test" "$PY" scripts/benchmark_photos.py --data data/mini4 --split test --out "$R/photos_mini4_test"
step "$R/cutout_composites" "$PY" -m eval.compose --backgrounds "$R/photos_mini4_test" -n 60 --seed 1 \
  --out "$R/cutout_composites"
for Z in v2_h v3_h; do
  step "$R/real_$Z" "$PY" -m eval.real --zoo "$R/zoo_$Z" --out "$R/real_$Z" \
    --composites "$S/test/composites,$R/cutout_composites" --photos "$S/test/photos,$R/photos_mini4_test"
done
# 6. WITH_SYCONET=1: SycoNet on v3 (SYCONET_STEPS, the recipe's 1,500 by default), finetuned on
#    each domain with three seeds, each scored against the all-domain model on its domain: does the
#    per-domain finetune lower the reconstruction error and shift_ED on v3's test split?
if [ "${WITH_SYCONET:-0}" = 1 ]; then
  SN=${SYCONET_STEPS:-1500}
  step "$R/syconet_all.safetensors" "$PY" -m syconet.train \
    $("$PY" -m common.recipes args syconet_all | sed "s/--steps [0-9]*/--steps $SN/") --data data/v3 --out "$R/syconet_all.safetensors"
  evaluate() {  # evaluate NAME DOMAIN: syconet_NAME scored on DOMAIN's test split
    step "$R/syconet_eval_$1.txt" sh -c "'$PY' -m syconet.evaluate --data data/v3 --ckpt '$R/syconet_${1%_on_*}.safetensors' \
      --domains $2 --size 128 --k 4 > '$R/syconet_eval_$1.tmp' && mv '$R/syconet_eval_$1.tmp' '$R/syconet_eval_$1.txt'"
  }
  for D in MiniFlickr MiniCOCO MiniAdobe MiniDay2night; do
    evaluate "all_on_$D" "$D"
    for S in 0 1 2; do
      step "$R/syconet_${D}_s$S.safetensors" "$PY" -m syconet.train $("$PY" -m common.recipes args syconet_domain) \
        --data data/v3 --domains "$D" --init "$R/syconet_all.safetensors" --seed "$S" --out "$R/syconet_${D}_s$S.safetensors"
      evaluate "${D}_s${S}_on_$D" "$D"
    done
  done
fi
log "all done"
