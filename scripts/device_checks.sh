#!/usr/bin/env bash
# The CUDA checks of issue #7, as one script for a lent GPU machine (run from the repository root):
#   bash scripts/device_checks.sh        # results under $OUT (default runs/device)
# 1. tests/test_cuda.py (CUDA agrees with the CPU: LUT values and gradients, SycoNet, harmonize,
#    a training run with bf16 AMP + channels_last); 2. training throughput at 256 px, fp32 vs bf16
#    AMP vs AMP + channels_last (bench/train_throughput.py); 3. Table 2 with a GPU-sized budget.
# Each stage has its own time limit so that the whole script ends within about 9 minutes.
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
[ -d data/mini4 ] || (timeout 120 $PY -m domains.build --photos assets/photos --out data/mini4 --seed 0 > runs/build.log 2>&1) &
BUILD=$!
timeout 150 $PY -m pytest -q -p no:cacheprovider -m gpu tests/test_cuda.py > "$OUT/pytest_gpu.log" 2>&1
echo "pytest exit $?" >> "$OUT/pytest_gpu.log"
wait $BUILD
echo "[$SECONDS s] tests done" | tee -a "$OUT/gpu.txt"
timeout 200 $PY bench/train_throughput.py --device cuda --size 256 --steps 40 --out "$OUT/train_throughput_cuda.md" \
  > "$OUT/throughput.log" 2>&1
echo "[$SECONDS s] throughput done" | tee -a "$OUT/gpu.txt"
left=$(( ${DEADLINE:-520} - SECONDS ))
if [ $left -gt 60 ]; then
  timeout $left $PY -m eval.tables table2 --data data/mini4 --out runs/gpu/table2 --runs runs/gpu \
    --syconet_steps 600 --steps 300 --batch_size 16 --device cuda > "$OUT/table2.log" 2>&1
fi
cp runs/gpu/table2/report.md "$OUT/table2_report.md" 2>/dev/null
cp runs/gpu/table2/results.json "$OUT/table2_results.json" 2>/dev/null
echo "[$SECONDS s] table2 done" | tee -a "$OUT/gpu.txt"
tail -3 "$OUT/pytest_gpu.log"; cat "$OUT/train_throughput_cuda.md" 2>/dev/null; cat "$OUT/table2_report.md" 2>/dev/null
