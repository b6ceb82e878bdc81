#!/usr/bin/env bash
# What unetbg does, end to end, on the embedded default (no Redis, SQLite in DEMO_DIR):
# 1. cut people out of photos that install with scikit-image, with the default model
#    that ships in the package (no data, no training needed), and say how much of each
#    cut-out is opaque;
# 2. with the COCO subset present: check it, cut out its val photos as a remove-dir job
#    (default model), then train the tiny `smoke` preset as a job — a demonstration of
#    training only: the default model stays what `--checkpoint default` uses.
set -euo pipefail
COCO_ROOT=${1:-../shared/data/coco-mini}
DEMO_DIR=${2:-demo-output}
BIN=${BIN:-.venv/bin}

export UNETBG_DATA_DIR="$DEMO_DIR/data"
unset UNETBG_BROKER_URL UNETBG_DATABASE_URL UNETBG_DEFAULT_MODEL

echo "== cutting out the people in two photos that come with scikit-image (default model)"
mkdir -p "$DEMO_DIR/photos"
"$BIN/python" - "$DEMO_DIR/photos" <<'PY'
import sys
from pathlib import Path

from PIL import Image
from skimage import data

out = Path(sys.argv[1])
Image.fromarray(data.astronaut()).save(out / "astronaut.jpg", quality=92)
Image.fromarray(data.camera()).save(out / "cameraman.png")
PY
"$BIN/unetbg" remove "$DEMO_DIR/photos/astronaut.jpg" "$DEMO_DIR/photos/cameraman.png" \
  -o "$DEMO_DIR/default-cutouts" --checkpoint default --overwrite
"$BIN/python" scripts/opacity.py "$DEMO_DIR"/default-cutouts/*.png

if ! "$BIN/unetbg" coco quick --root "$COCO_ROOT" --split val; then
  echo "No COCO data at $COCO_ROOT: the COCO steps are skipped (make demo COCO_ROOT=DIR)." >&2
  echo "Cut-outs are in $DEMO_DIR/default-cutouts (RGBA PNG, original sizes)."
  exit 0
fi
"$BIN/unetbg" coco verify --root "$COCO_ROOT" --split val

echo "== removing backgrounds for $COCO_ROOT/val2017 -> $DEMO_DIR/cutouts (default model)"
"$BIN/unetbg" remove-dir "$COCO_ROOT/val2017" "$DEMO_DIR/cutouts" --checkpoint default --wait
"$BIN/python" scripts/opacity.py "$DEMO_DIR"/cutouts/*.png | tail -n 1

echo "== training the smoke preset as a job (a demonstration; it does not replace the default model)"
"$BIN/unetbg" submit-train --preset smoke --coco-root "$COCO_ROOT" --wait
"$BIN/unetbg" checkpoints
"$BIN/unetbg" jobs
echo "Cut-outs are in $DEMO_DIR/default-cutouts and $DEMO_DIR/cutouts (RGBA PNG, original sizes)."
