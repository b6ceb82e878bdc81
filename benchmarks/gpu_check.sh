#!/usr/bin/env bash
# The GPU check of docs/performance.md, in one go (about 5 minutes on one GPU):
# network throughput and achieved TFLOP/s (fp32 and AMP, channels_last) next to the
# measured matmul/conv peaks, then remove-dir end to end vs network only on the GPU.
#   benchmarks/gpu_check.sh [OUTPUT_DIR]
set -euo pipefail
cd "$(dirname "$0")"
out=${1:-gpu-results}
mkdir -p "$out"
py=../.venv/bin/python
[ -x "$py" ] || py=python
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv | tee "$out/gpu.txt"
"$py" bench_inference.py --device cuda --sizes 384,512 --batches 1,8,32 --iters 10 --warmup 3 \
    2>&1 | tee "$out/bench_inference.txt"
"$py" bench_jobs.py --device cuda --images 256 --image-size 384 --chunk-size 64 --batch-size 16 \
    --modes inprocess --overhead-images 0 > "$out/bench_jobs.json" 2> "$out/bench_jobs.txt"
cat "$out/bench_jobs.txt"
