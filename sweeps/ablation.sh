#!/usr/bin/env bash
# The coordinate-embedding ablation (issue 15; docs/imx500.md, "The ablation"): how the network
# learns where the face is, measured over 3 seeds on the same data.
#
#   bash sweeps/ablation.sh [OUT_DIR] [override ...]
#
# 1. TinyTracker x model.position={input,none,late,frame} x seed={0,1,2}, each a QAT run
#    (+experiment=qat: the float model is trained and tested as the reference, then fine-tuned
#    with quantization in the loop), into OUT_DIR/tinytracker/<job>/;
# 2. TinyTrackerS (96x96 grey) x model.position=late x seed={0,1,2}, into
#    OUT_DIR/tinytracker_s/<job>/;
# 3. every one-input QAT checkpoint exported with format=imx500 (Sony's MCT and the real
#    converter; the emulated camera's test error) into <run>/imx500_export/; `input` runs have
#    two inputs and are not exported (format=imx500 refuses them);
# 4. python -m tinytracker.report runs=OUT_DIR table=ablation: OUT_DIR/report/ablation.md.
#
# Extra overrides go to every training run (e.g. data.synthetic.subjects=240). A rerun skips
# the exports that exist; it retrains (Hydra multirun jobs do not resume), so give a new
# OUT_DIR for a new ablation. PYTHON picks the interpreter (default: .venv/bin/python).
# The same grid as a W&B sweep: sweeps/ablation.yaml.
set -euo pipefail

OUT=${1:-outputs/ablation}
shift || true
PY=${PYTHON:-.venv/bin/python}
SEEDS=${SEEDS:-0,1,2}

if [ -e "$OUT/report" ] || [ -e "$OUT/tinytracker" ] || [ -e "$OUT/tinytracker_s" ]; then
  if [ "${RESUME_EXPORTS:-0}" != 1 ]; then
    echo "sweeps/ablation.sh: $OUT already holds an ablation; give another OUT_DIR, or" \
         "RESUME_EXPORTS=1 to only export and report the runs it has" >&2
    exit 2
  fi
else
  "$PY" -m tinytracker.train -m +experiment=qat model.position=input,none,late,frame \
    "seed=$SEEDS" "out_dir=$OUT/tinytracker" "$@"
  "$PY" -m tinytracker.train -m '+experiment=[qat,tinytracker_s]' model.position=late \
    "seed=$SEEDS" "out_dir=$OUT/tinytracker_s" "$@"
fi

for metrics in "$OUT"/tinytracker*/*/metrics.json; do
  run=$(dirname "$metrics")
  position=$("$PY" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["model"]["position"])' \
    "$run/.hydra/config.yaml")
  if [ "$position" = input ] || [ -e "$run/imx500_export/export.json" ]; then
    continue
  fi
  ckpt=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["checkpoint"])' "$metrics")
  echo "== format=imx500: $run ($position)"
  "$PY" -m tinytracker.export "ckpt_path=$ckpt" format=imx500 "out_dir=$run/imx500_export"
done

"$PY" -m tinytracker.report "runs=$OUT" table=ablation "out_dir=$OUT/report"
