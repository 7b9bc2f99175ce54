#!/usr/bin/env bash
# Every figure of the README, from the models of scripts/train_models.sh. Outputs under reports/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-data/mini4}
R=${RUNS:-runs}
O=reports/figures
mkdir -p "$O"
ev() { "$PY" -m syconet.evaluate --data "$DATA" --size 128 "$@" | tail -1; }
# SycoNet: reconstruction and Div, all-domain model and per-domain finetunes
ev --ckpt "$R/syconet_all.safetensors" > "$O/syconet_all.json"
for D in MiniFlickr MiniDay2night; do
  ev --ckpt "$R/syconet_$D.safetensors" --domains "$D" > "$O/syconet_$D.json"
done
# Table 2 ablations on MiniDay2night (Div among 10 samples per real test image)
for A in none no_rec no_real move_z lutv2; do
  ev --ckpt "$R/ablation_$A.safetensors" --domains MiniDay2night > "$O/ablation_$A.json"
done
ev --ckpt "$R/ablation_none.safetensors" --domains MiniDay2night --zc > "$O/ablation_zc.json"
# harmonizers against the baselines (full resolution, metrics at 256)
for M in composite reinhard; do "$PY" -m eval.score --data "$DATA" --method $M --out "$O/score_$M.json" --overwrite; done
for C in issam_all rainnet_all gct_all; do "$PY" -m eval.score --data "$DATA" --ckpt "$R/$C.safetensors" --out "$O/score_$C.json" --overwrite; done
# the families side by side: fMSE, harm rate, real-photo drift, best/worst grid
"$PY" -m eval.compare --data "$DATA" --ckpts "issam=$R/issam_all.safetensors,rainnet=$R/rainnet_all.safetensors,gct=$R/gct_all.safetensors" \
  --out reports/compare --overwrite
# routed / soft / unified / oracle with the shipped zoo
"$PY" -m eval.benchmark --data "$DATA" --out reports/mini4 --overwrite
# routing of photos from sources no training saw (the head refitted without each source)
"$PY" -m eval.probes routing_sources --data "$DATA" --ckpt models/default/classifier.safetensors > "$O/routing_sources.md"
# the same modes on the training photos, cross-fitted (what the zoo's default mode is chosen on)
"$PY" -m eval.probes modes --data "$DATA" --runs "$R" > "$O/modes.md"
# the gain-drift frontier of the unified harmonizer's change plus the background prior's
"$PY" -m eval.probes frontier --data "$DATA" --ckpt models/default/harmonizer_unified.safetensors > "$O/frontier.md"
