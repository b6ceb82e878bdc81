"""Backends and output encoding, for ``bench_inference.py --backends ... --png``.

Real COCO val photos (../shared/data/coco-mini/val2017), letterboxed by
``ModelInference.prepare`` at the checkpoint's size. Without ``--checkpoint`` the
model is the default architecture with random weights whose batch norms are
calibrated on real photos (running statistics measured on them, as after training),
so that folding and export have real statistics to get right.

Agreement is against the unfused torch model (``ModelInference(fuse=False)``): the
largest |Δprobability| over all pixels, and the IoU of the masks thresholded at 0.5
over all pixels of all photos (the issue's bar: ≥ 0.995).
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
COCO_VAL = REPO.parent / "shared" / "data" / "coco-mini" / "val2017"


def coco_photos(count: int) -> list[np.ndarray]:
    paths = sorted(COCO_VAL.glob("*.jpg"))[:count]
    if not paths:
        raise SystemExit(f"no COCO val photos in {COCO_VAL}")
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def calibrated_checkpoint(path: Path, size: int, photos: list[np.ndarray]) -> Path:
    """The default architecture, random weights, batch-norm statistics from ``photos``."""
    import torch.nn.functional as F
    from torch import nn

    from unetbg.model import (
        ModelConfig,
        Preprocessing,
        build_checkpoint,
        create_model,
        save_checkpoint,
    )

    torch.manual_seed(0)
    config, prep = ModelConfig(), Preprocessing(image_size=size)
    model = create_model(config)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None
            with torch.no_grad():
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    mean = torch.tensor(prep.mean).view(1, 3, 1, 1)
    std = torch.tensor(prep.std).view(1, 3, 1, 1)
    batch = torch.cat(
        [
            F.interpolate(torch.tensor(p).permute(2, 0, 1)[None].float() / 255, size=(size, size))
            for p in photos[:8]
        ]
    )
    model.train()
    with torch.no_grad():
        model((batch - mean) / std)
    save_checkpoint(path, build_checkpoint(model.eval(), config, prep, 0, {}))
    return path


def agreement(expected: list[np.ndarray], got: list[np.ndarray]) -> tuple[float, float]:
    worst = max(float(np.abs(a - b).max()) for a, b in zip(expected, got, strict=True))
    a = np.concatenate([e.ravel() >= 0.5 for e in expected])
    b = np.concatenate([g.ravel() >= 0.5 for g in got])
    union = np.logical_or(a, b).sum()
    return worst, float(np.logical_and(a, b).sum() / union) if union else 1.0


def best_seconds(fn, iters: int) -> float:
    fn()
    best = float("inf")
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run_backends(args, size: int, device: torch.device) -> None:
    from unetbg.inference import ModelInference

    photos = coco_photos(args.photos)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = args.checkpoint or calibrated_checkpoint(
            Path(folder) / "model.pth", size, photos
        )
        reference = ModelInference(checkpoint, device=str(device), fuse=False, batch_size=1)
        expected = reference.predict_arrays(photos)
        image_size = reference.preprocessing.image_size
        print(f"\nBackends: checkpoint {args.checkpoint or 'calibrated random weights'}, ")
        print(f"letterbox {image_size}, {len(photos)} COCO val photos, batch 1\n")
        names = [n for n in args.backends.split(",") if n]
        rows = []
        for name in names:
            if name != "torch" and importlib.util.find_spec(name) is None:
                print(f"  {name}: not installed (pip install 'unetbg[{name}]'), skipped")
                continue
            t0 = time.perf_counter()
            handle = ModelInference(checkpoint, device=str(device), batch_size=1, backend=name)
            load_s = time.perf_counter() - t0
            worst, iou = agreement(expected, handle.predict_arrays(photos))
            batch = torch.stack([handle.prepare(photos[0])[0]])
            with torch.inference_mode():
                seconds = best_seconds(lambda h=handle, b=batch: h.backend(b), args.iters)
            rows.append((name, 1 / seconds, worst, iou, load_s))
            print(f"  {name}: {1 / seconds:.2f} img/s, max|Δp| {worst:.2e}, IoU {iou:.5f}")
        if rows:
            torch_ips = next((r[1] for r in rows if r[0] == "torch"), None)
            print("\n| backend | img/s | ÷ torch | max abs Δprob | mask IoU @0.5 | load s |")
            print("|---|---:|---:|---:|---:|---:|")
            for name, ips, worst, iou, load_s in rows:
                ratio = f"{ips / torch_ips:.2f}×" if torch_ips else "-"
                print(f"| {name} | {ips:.2f} | {ratio} | {worst:.1e} | {iou:.5f} | {load_s:.1f} |")
        if args.png:
            png_table(photos, expected)


def run_end_to_end(args, device: torch.device) -> None:
    """``batch_process`` of ``--photos`` COCO val photos to PNG cut-outs per backend (the
    removal loop a user runs, at ``--batches``' first size, the checkpoint's own
    switches), the backends taking turns for ``--rounds`` rounds, the best of each kept;
    load time (with the export cache warm: a first load is taken before the rounds)
    apart. Agreement: mask IoU at 0.5 of each backend's probabilities against torch's."""
    from unetbg.inference import ModelInference

    names = [n for n in args.backends.split(",") if n]
    batch = int(args.batches.split(",")[0])
    photos = sorted(COCO_VAL.glob("*.jpg"))[: args.photos]
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in photos]
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "in"
        source.mkdir()
        for path in photos:
            (source / path.name).symlink_to(path)
        probs = {}
        for name in names:  # the first load exports (and caches) the graph; not timed
            handle = ModelInference(
                args.checkpoint, device=str(device), batch_size=batch, backend=name
            )
            probs[name] = handle.predict_arrays(arrays)
            print(f"  {name}: {handle.backend_said}", flush=True)
        best: dict[str, tuple[float, float]] = {}
        for round_ in range(args.rounds):
            for name in names:
                t0 = time.perf_counter()
                handle = ModelInference(
                    args.checkpoint, device=str(device), batch_size=batch, backend=name
                )
                load_s = time.perf_counter() - t0
                out = Path(folder) / name
                summary = handle.batch_process(source, out, overwrite=True, follow_symlinks=True)
                ips = summary.processed / summary.seconds
                print(
                    f"  round {round_ + 1} {name}: load {load_s:.1f} s, {ips:.2f} img/s", flush=True
                )
                old = best.get(name, (float("inf"), 0.0))
                best[name] = (min(old[0], load_s), max(old[1], ips))
    print(f"\n{len(photos)} COCO val photos, batch {batch}, PNG cut-outs, best of {args.rounds}\n")
    print("| backend | load s (cache warm) | img/s end to end | ÷ torch | mask IoU vs torch |")
    print("|---|---:|---:|---:|---:|")
    torch_ips = best.get("torch", (0, 0))[1]
    for name, (load_s, ips) in best.items():
        iou = agreement(probs["torch"], probs[name])[1] if "torch" in probs else float("nan")
        ratio = f"{ips / torch_ips:.2f}×" if torch_ips else "-"
        print(f"| {name} | {load_s:.1f} | {ips:.2f} | {ratio} | {iou:.5f} |")


def png_table(photos: list[np.ndarray], probs: list[np.ndarray]) -> None:
    """Encode time and size per setting on the photos' RGBA cut-outs (640×480-ish)."""
    from unetbg.removal import OutputOptions, encode_output, render_output

    cutouts = [render_output(p, q, OutputOptions()) for p, q in zip(photos, probs, strict=True)]
    settings = [(f"png level {n}", OutputOptions(png_level=n)) for n in (0, 1, 2, 3, 6, 9)]
    settings.append(("webp q90 method 4", OutputOptions(format="webp")))
    shape = photos[0].shape
    print(f"\nEncoding {len(cutouts)} RGBA cut-outs (first {shape[1]}×{shape[0]}), one thread:\n")
    print("| output | ms / image | kB / image |\n|---|---:|---:|")
    for label, options in settings:
        sizes = []
        t0 = time.perf_counter()
        for image in cutouts:
            sizes.append(len(encode_output(image, options)))
        ms = 1000 * (time.perf_counter() - t0) / len(cutouts)
        print(f"| {label} | {ms:.1f} | {np.mean(sizes) / 1000:.0f} |")
