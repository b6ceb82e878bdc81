#!/usr/bin/env bash
# The main job end to end, on the embedded default (no Redis, SQLite in DEMO_DIR):
# check the dataset, train the tiny `smoke` preset as a job, then cut out the people
# in the val images as a remove-dir job, and show the job records.
set -euo pipefail
COCO_ROOT=${1:-../shared/data/coco-mini}
DEMO_DIR=${2:-demo-output}
BIN=${BIN:-.venv/bin}

export UNETBG_DATA_DIR="$DEMO_DIR/data"
unset UNETBG_BROKER_URL UNETBG_DATABASE_URL

if ! "$BIN/unetbg" coco quick --root "$COCO_ROOT" --split val; then
  echo "No COCO data at $COCO_ROOT: download it as shown above, then: make demo COCO_ROOT=DIR" >&2
  exit 1
fi
"$BIN/unetbg" coco verify --root "$COCO_ROOT" --split val
"$BIN/unetbg" coco analyze --root "$COCO_ROOT" --split val

echo "== training the smoke preset as a job (in-process, recorded in $UNETBG_DATA_DIR)"
"$BIN/unetbg" submit-train --preset smoke --coco-root "$COCO_ROOT" --wait
"$BIN/unetbg" checkpoints

echo "== removing backgrounds for $COCO_ROOT/val2017 -> $DEMO_DIR/cutouts"
"$BIN/unetbg" remove-dir "$COCO_ROOT/val2017" "$DEMO_DIR/cutouts" --checkpoint best --wait
"$BIN/unetbg" jobs
echo "Cut-outs are in $DEMO_DIR/cutouts (RGBA PNG, original sizes)."
