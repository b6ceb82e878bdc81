"""Inference throughput of the attention U-Net next to SMP's ``Unet('resnet34')``.

Prints, from one run on one machine:

* the machine's own matmul and 3×3-convolution peaks (GFLOP/s, measured here), so the
  model figures can be read as a fraction of what this hardware does on its best ops;
* for each model, image size and batch size: FLOPs per image, images/s and achieved
  GFLOP/s, in fp32 with contiguous (NCHW) and channels_last tensors, and on CUDA also
  with float16 autocast (AMP, channels_last).

Next to them, the steps of the inference-time rewrite (``unetbg.model.fuse``): batch
norm folded, concatenations split, upsampling + convolution as a transposed
convolution (the default ``ModelInference`` runs the last one), each measured alone.

``--backends torch,onnxruntime,openvino`` also runs each installed backend at the
first size, batch 1, on real COCO val photos: its speed next to torch's, and its
agreement with the unfused torch model (max |Δprob|, mask IoU at 0.5). ``--png``
times PNG levels and WebP on cut-outs of those photos (ms and kB per image).

FLOPs come from ``unetbg.model.count_flops`` (torch's FlopCounterMode: convolutions and
matrix products, a multiply-add = 2 FLOPs). Each configuration is run ``--warmup``
times, then timed ``--iters`` times; the fastest iteration is reported (the least
disturbed by other work on the machine, as ``timeit`` recommends).

    python benchmarks/bench_inference.py --device cpu --sizes 256,384,512 --batches 1,8 --iters 3
    python benchmarks/bench_inference.py --device cpu --sizes 384 --batches 1 --iters 10 \
        --backends torch,onnxruntime,openvino --png
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

from unetbg.model import ModelConfig, count_flops, count_parameters, create_model, resolve_device
from unetbg.model.fuse import fuse_for_inference

UNFUSED = "unetbg AttentionUNet"
FUSED = "unetbg fused (default)"
SMP = "smp Unet(resnet34)"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_seconds(fn: Callable[[], object], device: torch.device, warmup: int, iters: int) -> float:
    """Fastest of ``iters`` timed calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    _sync(device)
    best = float("inf")
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_peak(device: torch.device, dtype: torch.dtype, iters: int) -> float:
    """GFLOP/s of a square matrix product (2·n³ FLOPs) sized to keep the units busy."""
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = best_seconds(lambda: a @ b, device, warmup=1, iters=max(iters, 3))
    return 2 * n**3 / seconds / 1e9


def conv_peak(device: torch.device, amp: bool, iters: int) -> float:
    """GFLOP/s of a 256→256 3×3 convolution on 64×64 maps (a typical U-Net decoder/encoder
    layer), best of contiguous and channels_last."""
    batch = 16 if device.type == "cuda" else 2
    conv = nn.Conv2d(256, 256, 3, padding=1, bias=False).to(device).eval()
    x = torch.randn(batch, 256, 64, 64, device=device)
    flops = 2 * 256 * 256 * 9 * 64 * 64 * batch
    best = 0.0
    for fmt in (torch.contiguous_format, torch.channels_last):
        conv = conv.to(memory_format=fmt)
        xf = x.contiguous(memory_format=fmt)
        with torch.inference_mode(), _autocast(device, amp):
            seconds = best_seconds(lambda c=conv, t=xf: c(t), device, warmup=1, iters=max(iters, 3))
        best = max(best, flops / seconds / 1e9)
    return best


def measure_peaks(device: torch.device, iters: int) -> dict[str, float]:
    """The matmul and convolution peaks (GFLOP/s), fp32 and on CUDA also fp16/AMP."""
    peaks = {
        "matmul fp32": matmul_peak(device, torch.float32, iters),
        "conv3x3 fp32": conv_peak(device, False, iters),
    }
    if device.type == "cuda":
        peaks["matmul fp16"] = matmul_peak(device, torch.float16, iters)
        peaks["conv3x3 AMP"] = conv_peak(device, True, iters)
    return peaks


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _autocast(device: torch.device, amp: bool):
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.float16)


def build_models(steps: bool = True) -> dict[str, nn.Module]:
    """Our default model, its inference rewrites (``steps``: each one alone too) and SMP's
    plain U-Net with the same encoder, all random-init (speed does not depend on it)."""
    ours = create_model(ModelConfig()).eval()
    models: dict[str, nn.Module] = {UNFUSED: ours}
    if steps:
        models["unetbg fold BN"] = fuse_for_inference(ours, split=False)
        models["unetbg fold BN + split cat"] = fuse_for_inference(ours, transposed=False)
    models[FUSED] = fuse_for_inference(ours)
    try:
        import segmentation_models_pytorch as smp
    except ImportError:
        print("segmentation_models_pytorch not installed (pip install unetbg[bench]): skipped")
    else:
        models[SMP] = smp.Unet("resnet34", encoder_weights=None)
    return {name: m.eval() for name, m in models.items()}


def run_model(
    model: nn.Module,
    device: torch.device,
    sizes: list[int],
    batches: list[int],
    modes: list[str],
    warmup: int,
    iters: int,
) -> list[dict]:
    rows = []
    flops = {size: count_flops(model, size) for size in sizes}
    for mode in modes:
        fmt = torch.contiguous_format if mode == "fp32 contiguous" else torch.channels_last
        amp = mode.startswith("amp")
        model.to(device=device, memory_format=fmt)
        for size in sizes:
            for batch in batches:
                x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=fmt)

                def step(x: torch.Tensor = x, amp: bool = amp) -> object:
                    with torch.inference_mode(), _autocast(device, amp):
                        return model(x)

                seconds = best_seconds(step, device, warmup, iters)
                ips = batch / seconds
                rows.append(
                    {
                        "mode": mode,
                        "size": size,
                        "batch": batch,
                        "gflop_per_image": flops[size] / 1e9,
                        "images_per_s": ips,
                        "gflop_per_s": flops[size] * ips / 1e9,
                    }
                )
                print(
                    f"  {mode:18s} {size:4d}² batch {batch:2d}: {ips:8.2f} img/s "
                    f"{flops[size] * ips / 1e9:9.1f} GFLOP/s",
                    flush=True,
                )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="256,384,512", help="square input sizes")
    parser.add_argument("--batches", default="1,8", help="batch sizes")
    parser.add_argument("--iters", type=int, default=5, help="timed iterations (best is kept)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    parser.add_argument("--rounds", type=int, default=1, help="turns per model (best kept)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--backends", default="", help="e.g. torch,onnxruntime,openvino (CPU; first size)"
    )
    parser.add_argument("--checkpoint", default=None, help="for --backends (default: calibrated)")
    parser.add_argument("--photos", type=int, default=24, help="COCO val photos for --backends")
    parser.add_argument("--png", action="store_true", help="PNG level / WebP timing table")
    parser.add_argument("--no-steps", action="store_true", help="skip the fusion steps")
    parser.add_argument(
        "--only-backends", action="store_true", help="skip peaks and the model table"
    )
    parser.add_argument(
        "--end-to-end",
        action="store_true",
        help="only: --backends (auto among them) through the removal loop, --checkpoint's "
        "model (default: the shipped one), first of --batches",
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    print(f"torch {torch.__version__}, python {sys.version.split()[0]}, device {device} ({name})")
    print(f"CPU threads used by torch: {torch.get_num_threads()}")
    print(f"iters {args.iters} (best kept), warmup {args.warmup}\n")
    if args.end_to_end:
        from bench_backends import run_end_to_end

        run_end_to_end(args, device)
        return 0
    if args.only_backends:
        from bench_backends import run_backends

        run_backends(args, sizes[0], device)
        return 0

    print("Peaks measured here (GFLOP/s):")
    peaks = measure_peaks(device, args.iters)
    for label, value in peaks.items():
        print(f"  {label:13s}: {value:10.1f}")
    print()

    modes = ["fp32 contiguous", "fp32 channels_last"]
    if device.type == "cuda":
        modes.append("amp channels_last")
    results: dict[str, list[dict]] = {}
    models = build_models(not args.no_steps)
    # Models take turns, round after round, and each keeps its best: a burst of other
    # work on the machine then slows one round of every model, not all rounds of one.
    for round_ in range(args.rounds):
        for label, model in models.items():
            print(f"{label}: {count_parameters(model) / 1e6:.2f} M parameters, round {round_ + 1}")
            rows = run_model(model, device, sizes, batches, modes, args.warmup, args.iters)
            if label in results:
                rows = [
                    max(a, b, key=lambda r: r["images_per_s"])
                    for a, b in zip(results[label], rows, strict=True)
                ]
            results[label] = rows
            print()

    # Measured again after the models, the best kept (as for the models).
    peaks = {
        k: max(v, p)
        for (k, v), p in zip(peaks.items(), measure_peaks(device, args.iters).values(), strict=True)
    }
    print("Peaks, best of before and after:", ", ".join(f"{k} {v:.1f}" for k, v in peaks.items()))
    print("| model | mode | size | batch | GFLOP/img | img/s | GFLOP/s | % of conv peak |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for label, rows in results.items():
        for r in rows:
            peak = peaks["conv3x3 AMP" if r["mode"].startswith("amp") else "conv3x3 fp32"]
            print(
                f"| {label} | {r['mode']} | {r['size']} | {r['batch']} | "
                f"{r['gflop_per_image']:.1f} | {r['images_per_s']:.2f} | {r['gflop_per_s']:.1f} | "
                f"{100 * r['gflop_per_s'] / peak:.0f}% |"
            )
    print_ratios(results)
    if args.backends or args.png:
        from bench_backends import run_backends

        run_backends(args, sizes[0], device)
    return 0


def print_ratios(results: dict[str, list[dict]]) -> None:
    """Each unetbg variant's img/s over SMP's, same mode/size/batch (the issue's target:
    fused ÷ SMP ≥ 1.0 at 384², batch 1, channels_last)."""
    if SMP not in results:
        return
    smp = {(r["mode"], r["size"], r["batch"]): r["images_per_s"] for r in results[SMP]}
    print("\n| model | mode | size | batch | img/s | ÷ SMP |\n|---|---|---:|---:|---:|---:|")
    for label, rows in results.items():
        if label == SMP:
            continue
        for r in rows:
            ref = smp[(r["mode"], r["size"], r["batch"])]
            print(
                f"| {label} | {r['mode']} | {r['size']} | {r['batch']} | "
                f"{r['images_per_s']:.2f} | {r['images_per_s'] / ref:.2f}× |"
            )


if __name__ == "__main__":
    raise SystemExit(main())
