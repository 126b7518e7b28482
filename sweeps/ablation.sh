#!/usr/bin/env bash
# The coordinate-embedding ablation (issue 15; docs/imx500.md, "The ablation"): how the network
# learns where the face is, measured over 3 seeds on the same data.
#
#   bash sweeps/ablation.sh [OUT_DIR] [override ...]
#
# Runs, JOBS at a time (default 2, one thread each: on a small CPU two one-thread runs finish
# sooner than two two-thread runs one after the other):
# 1. TinyTracker x model.position={input,none,late,frame} x seed={0,1,2}, each a QAT run
#    (+experiment=qat: the float model is trained and tested as the reference, then fine-tuned
#    with quantization in the loop), into OUT_DIR/tinytracker/<position>-seed<seed>/;
# 2. TinyTrackerS (96x96 grey) x model.position=late x seed={0,1,2}, into
#    OUT_DIR/tinytracker_s/late-seed<seed>/;
# 3. after each one-input run, its QAT checkpoint exported with format=imx500 (Sony's MCT and
#    the real converter; the emulated camera's test error) into <run>/imx500_export/; `input`
#    runs have two inputs and are not exported (format=imx500 refuses them);
# then python -m tinytracker.report runs=OUT_DIR table=ablation: OUT_DIR/report/ablation.md.
#
# Each run is one `python -m tinytracker.train` (the same as a job of the multirun
#   python -m tinytracker.train -m +experiment=qat model.position=input,none,late,frame seed=0,1,2
# ); runs differing only by seed are one row of the report. Extra overrides go to every training
# run (e.g. data.synthetic.subjects=240). A rerun skips the runs and exports that finished, so
# a killed ablation continues where it stopped. PYTHON picks the interpreter (default:
# .venv/bin/python), SEEDS the seeds (default "0 1 2"). The same grid as a W&B sweep:
# sweeps/ablation.yaml.
set -euo pipefail

OUT=${1:-outputs/ablation}
shift || true
export PY=${PYTHON:-.venv/bin/python} OUT
export EXTRA="$*"
SEEDS=${SEEDS:-0 1 2}
JOBS=${JOBS:-2}

# one line per run: <folder> <position> <experiment>
jobs() {
  for seed in $SEEDS; do
    for position in input none late frame; do
      echo "tinytracker/$position-seed$seed $position qat $seed"
    done
    echo "tinytracker_s/late-seed$seed late [qat,tinytracker_s] $seed"
  done
}

run_one() {
  local folder=$1 position=$2 experiment=$3 seed=$4
  local run="$OUT/$folder"
  if [ ! -e "$run/metrics.json" ]; then
    rm -rf "$run"  # a run killed before its end: start it again
    echo "== train $folder"
    # shellcheck disable=SC2086  # EXTRA: the caller's overrides, one word each
    OMP_NUM_THREADS=1 "$PY" -m tinytracker.train "+experiment=$experiment" \
      "model.position=$position" "seed=$seed" "out_dir=$run" $EXTRA > "$run.log" 2>&1 \
      || { echo "train $folder failed: see $run.log" >&2; return 1; }
    mv "$run.log" "$run/ablation.log"
  fi
  if [ "$position" = input ] || [ -e "$run/imx500_export/export.json" ]; then
    return 0
  fi
  local ckpt
  ckpt=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["checkpoint"])' \
    "$run/metrics.json")
  local data=() word
  for word in $EXTRA; do  # the training's data overrides: evaluate on the same frames
    case $word in data.*) data+=("$word") ;; esac
  done
  echo "== format=imx500 $folder"
  OMP_NUM_THREADS=1 "$PY" -m tinytracker.export "ckpt_path=$ckpt" format=imx500 \
    "out_dir=$run/imx500_export" overwrite=true "${data[@]}" >> "$run/ablation.log" 2>&1 \
    || { echo "export $folder failed: see $run/ablation.log" >&2; return 1; }
}
export -f run_one

mkdir -p "$OUT/tinytracker" "$OUT/tinytracker_s"
jobs | xargs -P "$JOBS" -L 1 bash -c 'run_one "$@"' _
"$PY" -m tinytracker.report "runs=$OUT" table=ablation "out_dir=$OUT/report"
