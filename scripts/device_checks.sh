#!/usr/bin/env bash
# The CUDA checks, as one script for a lent GPU machine (run from the repository root):
#   bash scripts/device_checks.sh [STAGE...]      # results under $OUT (default runs/device)
# Stages (default: all, in this order):
#   tests        tests/test_cuda.py (CUDA agrees with the CPU: LUT values and gradients, SycoNet,
#                harmonize, soft routing; training with bf16 AMP + channels_last, RainNet's GAN term,
#                re-grade + LUT augmentation, SycoNet finetunes with replay / head-only)
#   throughput   SycoNet, iS2AM and GCT (--augment processes, batched on the GPU) training throughput
#                at 256 px, batch 64: loading in the main process vs auto workers, bf16 AMP, +
#                channels_last, + torch.compile; the share of time waiting for data
#   processes    the colour processes' training pairs: per image (one CPU loader worker) vs batched
#                on the GPU, batches of 16 and 64 at 256 px (bench/process_pairs.py)
#   harmonizers  the all-domain harmonizers with a GPU budget (STEPS, default 3000) with and without
#                augmentation + re-grade, scored on the test split (harmonizers table in the README)
#   table2       Table 2 with a GPU-sized budget
# Each stage has its own time limit so that the whole script ends by $DEADLINE seconds (default 520).
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
OUT=${OUT:-runs/device}
mkdir -p "$OUT" runs
PY=${PY:-python3}
if ls .whl/*.whl >/dev/null 2>&1; then  # packages the GPU image lacks (fire), carried as wheels
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  $PY -c "import torch, timm, numba; print('torch', torch.__version__, 'timm', timm.__version__, 'numba', numba.__version__)"
} > "$OUT/gpu.txt" 2>&1
STAGES=${*:-tests throughput processes harmonizers table2}
has() { [[ " $STAGES " == *" $1 "* ]]; }
left() { echo $(( ${DEADLINE:-520} - SECONDS )); }
[ -d data/mini4 ] || (timeout 120 $PY -m domains.build --photos assets/photos --out data/mini4 --seed 0 > runs/build.log 2>&1) &
BUILD=$!
if has tests; then
  timeout 200 $PY -m pytest -q -p no:cacheprovider -m gpu tests/test_cuda.py > "$OUT/pytest_gpu.log" 2>&1
  echo "pytest exit $?" >> "$OUT/pytest_gpu.log"
  echo "[$SECONDS s] tests done" | tee -a "$OUT/gpu.txt"
fi
wait $BUILD
if has throughput; then
  timeout 300 $PY bench/train_throughput.py --device cuda --size 256 --steps 40 --batch 64 --only SycoNet,iS2AM,GCT \
    --out "$OUT/train_throughput_cuda.md" > "$OUT/throughput.log" 2>&1
  echo "[$SECONDS s] throughput done" | tee -a "$OUT/gpu.txt"
fi
if has processes; then
  timeout 90 $PY bench/process_pairs.py --device cuda --out "$OUT/process_pairs_cuda.md" > "$OUT/processes.log" 2>&1
  echo "[$SECONDS s] processes done" | tee -a "$OUT/gpu.txt"
fi
if has harmonizers; then  # name|arch|extra arguments; each trained, then scored on the test split
  STEPS=${STEPS:-3000}
  for run in "issam_none|issam64|" "issam_lut_rg|issam64|--augment lut --regrade 0.5" \
             "rainnet_lut_rg|rainnet64|--augment lut --regrade 0.5" "issam_rg|issam64|--regrade 0.5"; do
    IFS='|' read -r name arch extra <<< "$run"
    [ "$(left)" -gt 60 ] || break
    # shellcheck disable=SC2086
    timeout "$(left)" $PY -m harmonizers.train --data data/mini4 --domains all --arch "$arch" --steps "$STEPS" \
      --batch_size 16 --lr 5e-4 --workers 4 --device cuda $extra --out "runs/gpu/h_$name.safetensors" \
      > "$OUT/h_$name.log" 2>&1 &&
    timeout 120 $PY -m eval.score --data data/mini4 --ckpt "runs/gpu/h_$name.safetensors" \
      --json "$OUT/h_$name.json" > "$OUT/h_$name.score" 2>&1
    echo "[$SECONDS s] harmonizer $name done" | tee -a "$OUT/gpu.txt"
  done
fi
if has table2 && [ "$(left)" -gt 60 ]; then
  timeout "$(left)" $PY -m eval.tables table2 --data data/mini4 --out runs/gpu/table2 --runs runs/gpu \
    --syconet_steps 600 --steps 300 --batch_size 16 --device cuda > "$OUT/table2.log" 2>&1
fi
cp runs/gpu/table2/report.md "$OUT/table2_report.md" 2>/dev/null
cp runs/gpu/table2/results.json "$OUT/table2_results.json" 2>/dev/null
echo "[$SECONDS s] table2 done" | tee -a "$OUT/gpu.txt"
tail -3 "$OUT/pytest_gpu.log"; grep -h -A7 "^| domain" "$OUT"/h_*.score 2>/dev/null; cat "$OUT/train_throughput_cuda.md" "$OUT/process_pairs_cuda.md" 2>/dev/null; cat "$OUT/table2_report.md" 2>/dev/null
