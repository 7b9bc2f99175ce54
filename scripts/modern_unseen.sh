#!/usr/bin/env bash
# The shipped recipes on modern photos of sources that no part of the zoo saw. The bundled photos are
# split by source (scripts/holdout_split.py: half of the sources, the largest one kept for training),
# every model is retrained without the held-back half (scripts/train_v3.sh on the other half and
# LabelMe's training sources), and that zoo is scored against the composite on the held-back photos:
# their synthetic composites (official protocol, both splits), 60 cut-out composites pasted into
# them, and the photos themselves with their own masks (drift). The shipped zoo, which saw those
# sources, is scored beside it on the same files.
# Resumable like train_v3.sh. About 30 minutes on a 2-core CPU. SEED=1 (2, ...) draws another split.
#   LABELME=/path/to/labelme bash scripts/modern_unseen.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SEED=${SEED:-0}
X=$([ "$SEED" = 0 ] || echo "_s$SEED")   # the names of seed 0 carry no suffix
R=${RUNS:-runs/modern$X}
M=runs/modern_split$X
mkdir -p "$R"
run() {  # run OUT COMMAND...: run COMMAND unless OUT exists
  local out=$1; shift
  if [ -e "$out" ]; then echo "skip $out (exists)"; return; fi
  echo "[$(date +%H:%M:%S)] start $out"; "$@" > "$out.out" 2>&1
}
run "$M" "$PY" scripts/holdout_split.py --photos assets/photos --out "$M" --test_share 0.5 --seed "$SEED"
MODERN="$M/train/photos" V3_DATA=data/v3_modern$X V2_DATA=data/mini4_modern$X RUNS="$R" MEASURE=0 \
  bash scripts/train_v3.sh
U=data/modern_unseen$X
run "$U" "$PY" -m domains.build --photos "$M/test/photos" --out "$U" --seed 0
run "$R/cutout_composites" "$PY" -m eval.compose --backgrounds "$M/test/photos" -n 60 --seed 1 \
  --out "$R/cutout_composites"
for Z in "$R/zoo_v3_h" models/default; do
  N=$(basename "$Z")
  for SPLIT in train test; do
    run "$R/bench_${N}_$SPLIT" "$PY" -m eval.benchmark --data "$U" --split "$SPLIT" --zoo "$Z" \
      --out "$R/bench_${N}_$SPLIT" --methods unified,default
  done
  run "$R/real_$N" "$PY" -m eval.real --zoo "$Z" --out "$R/real_$N" --composites "$R/cutout_composites" \
    --photos "$M/test/photos"
done
echo "[$(date +%H:%M:%S)] all done"
