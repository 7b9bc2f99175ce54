#!/usr/bin/env bash
# What a refactor must not change, written to one folder: the shipped zoo's outputs on the demo
# composite (both backends, every mode) and the trainers' checkpoints for seed 0 (a few CPU steps
# on the offline benchmark). Compare two snapshots byte for byte:
#   git stash; bash scripts/behaviour_snapshot.sh /tmp/before; git stash pop
#   bash scripts/behaviour_snapshot.sh /tmp/after; diff -r /tmp/before /tmp/after  (silent: unchanged)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: behaviour_snapshot.sh OUT}
PY=${PY:-.venv/bin/python}
DATA=${DATA:-data/mini4}
[ -d "$DATA" ] || "$PY" -m domains.build --photos assets/photos --out "$DATA" --seed 0
mkdir -p "$OUT"
for b in torch onnx; do
  for m in "" unified soft routed; do
    "$PY" -m router predict assets/demo/koala.jpg assets/demo/koala_mask.png --backend $b ${m:+--mode $m} \
      --out "$OUT/koala_${b}_${m:-default}.png" --overwrite > /dev/null
  done
done
T=/tmp/behaviour_snapshot_work  # one path: the checkpoints record where they were written
rm -rf "$T" && mkdir -p "$T"
"$PY" -m harmonizers.train --data "$DATA" --arch gct64 --steps 6 --batch_size 8 --augment processes:0.8 --device cpu \
  --workers 0 --out "$T/gct.safetensors" > /dev/null 2>&1
HARMONY_VARIANTS=tests.variants "$PY" -m harmonizers.train --data "$DATA" --arch issam_test --steps 4 --batch_size 4 --device cpu --workers 0 \
  --out "$T/issam.safetensors" > /dev/null 2>&1
HARMONY_VARIANTS=tests.variants "$PY" -m syconet.train --data "$DATA" --arch syconet_test --size 32 --enc_size 32 --steps 4 --batch_size 4 --device cpu \
  --workers 0 --out "$T/syconet.safetensors" > /dev/null 2>&1
"$PY" -m harmonizers.train --data "$DATA" --arch gct64 --steps 4 --batch_size 8 --calibrate_folds 2 --device cpu \
  --workers 0 --out "$T/gct_crossfit.safetensors" > /dev/null 2>&1
"$PY" -m router.train --data "$DATA" --backbone resnet10t --head finetune --size 32 --steps 3 --batch_size 8 \
  --device cpu --workers 0 --out "$T/router.safetensors" > /dev/null 2>&1
"$PY" -m router.train --data "$DATA" --backbone resnet10t --head probe --size 32 --batch_size 8 --device cpu \
  --workers 0 --out "$T/router_probe.safetensors" > /dev/null 2>&1
cp "$T"/*.safetensors "$OUT/"
rm -rf "$T"
echo "$OUT"
