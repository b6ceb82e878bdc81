"""int8 for OpenVINO (NNCF post-training quantisation) against fp32, on the val splits.

    UNETBG_DATA_DIR=$(mktemp -d) .venv/bin/python benchmarks/bench_int8.py \
        [--checkpoint src/unetbg/weights/person.pth] [--calibration 32] \
        [--variants plain,tail,tail_gates] [--data ../shared/data] [--limit N]

The fp32 reference is the ``openvino`` backend (its masks equal torch's: IoU 1.00000,
docs/performance.md). Each variant quantises the same exported graph with
``nncf.quantize`` (symmetric int8, per-channel weights, fast bias correction), calibrated
on ``--calibration`` photos from the *training* split of each source (evenly spaced over
its sorted list: the same photos every run, and never a val photo), and keeps some
layers in fp32 (NNCF ``ignored_scope``), found by the graph's shape rather than by the
exporter's node names:

``plain``       nothing kept: every convolution int8
``tail``        the last decoder stage and the head (everything after the last upsampling)
``gates``       the five attention gates (their convolutions, sigmoid and product)
``mixed``       asymmetric activations (NNCF's MIXED preset) instead of symmetric

(joined with ``_``: ``tail_gates``). Then every variant and fp32 run the product's own
path (``ModelInference.predict_arrays``: the checkpoint's letterbox, flip averaging and
edge refinement) on each val split: coco-mini ``val2017``, and the hash-split val part of
the coco-person and ccp-person mask folders (what ``unetbg evaluate`` scores). Printed
per source: ``agreement``, the IoU of the variant's masks with fp32's at 0.5 pooled over
the split's pixels; ``gt_iou``, the IoU against the ground truth (crowd pixels ignored, as
``unetbg evaluate`` does); the lowest agreement of one photo. The bar to ship int8:
agreement >= 0.98 and a gt_iou drop <= 0.005 on each split.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from unetbg.data.sources import DataSource
from unetbg.inference import ModelInference
from unetbg.model import SegmentationMeter

ROOT = Path(__file__).resolve().parent.parent
THRESHOLD = 0.5


def sources(data: Path) -> dict[str, DataSource]:
    return {
        "coco-mini": DataSource("coco", str(data / "coco-mini")),
        "coco-person": DataSource("masks", str(data / "coco-person")),
        "ccp-person": DataSource("masks", str(data / "ccp-person")),
    }


def calibration_inputs(reference: ModelInference, data: Path, per_source: int) -> list:
    """Letterboxed inputs of ``per_source`` training photos of each source, evenly spaced."""
    items = []
    for name, source in sources(data).items():
        reader = source.reader("train", 10, name)
        count = len(reader)
        for i in range(per_source):
            image, _, _ = reader.load(round(i * (count - 1) / max(per_source - 1, 1)))
            tensor, _ = reference.prepare(image)
            items.append(tensor.unsqueeze(0).numpy())
    return items


def tail_names(model) -> list[str]:
    """Every operation after the last upsampling (a transposed convolution once folded)."""
    ops = model.get_ordered_ops()
    last = max(i for i, op in enumerate(ops) if op.get_type_name() == "ConvolutionBackpropData")
    return [op.get_friendly_name() for op in ops[last:] if op.get_type_name() != "Constant"]


def gate_names(model) -> list[str]:
    """Each attention gate: its sigmoid, every operation that feeds it back to the second
    convolution on each path (the gate's own 1x1 convolutions, and on the shape paths of
    its resizing a few of the decoder's), and the product that applies it."""
    names: set[str] = set()
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Sigmoid":
            continue
        stack = [(op, 0)]
        while stack:
            node, convs = stack.pop()
            names.add(node.get_friendly_name())
            convs += node.get_type_name() == "Convolution"
            if convs >= 2:
                continue
            for port in node.inputs():
                source = port.get_source_output().get_node()
                if source.get_type_name() not in ("Constant", "Parameter", "MaxPool"):
                    stack.append((source, convs))
        for output in op.outputs():
            names.update(t.get_node().get_friendly_name() for t in output.get_target_inputs())
    return sorted(names)


def quantised_backend(graph: Path, variant: str, items: list, threads: int):
    import nncf
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(graph))
    keep = (tail_names(model) if "tail" in variant else []) + (
        gate_names(model) if "gates" in variant else []
    )
    preset = nncf.QuantizationPreset.MIXED if "mixed" in variant else None
    started = time.perf_counter()
    quantised = nncf.quantize(
        model,
        nncf.Dataset(items),
        preset=preset,
        subset_size=len(items),
        ignored_scope=nncf.IgnoredScope(names=sorted(set(keep)), validate=False),
    )
    seconds = time.perf_counter() - started
    print(f"{variant}: quantised in {seconds:.0f} s, {len(set(keep))} operations kept in fp32")
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    compiled = core.compile_model(quantised, "CPU", config)
    request = compiled.create_infer_request()

    def backend(batch: torch.Tensor) -> torch.Tensor:
        out = request.infer({0: np.ascontiguousarray(batch.numpy(), dtype=np.float32)})
        return torch.from_numpy(np.array(out[compiled.output(0)]))

    return backend


def compare(reference: ModelInference, backends: dict, data: Path, limit: int | None) -> dict:
    """Per source, per variant: agreement with fp32, IoU against the ground truth, over
    the first ``limit`` photos of each val split (all without one)."""
    results: dict[str, dict] = {name: {} for name in backends}
    for name, source in sources(data).items():
        reader = source.reader("val", 10, name)
        truth = {v: SegmentationMeter(threshold=THRESHOLD) for v in backends}
        overlap = {v: [0, 0] for v in backends}
        worst = dict.fromkeys(backends, 1.0)
        count = min(len(reader), limit or len(reader))
        for index in range(count):
            image, mask, ignore = reader.load(index)
            masks = {}
            for variant, backend in backends.items():
                reference.backend = backend
                probability = reference.predict_arrays([image])[0]
                truth[variant].update([probability], [mask], [ignore])
                masks[variant] = probability >= THRESHOLD
            print(f"{name} {index + 1}/{count}", file=sys.stderr, flush=True)
            for variant, got in masks.items():
                inter = int((got & masks["fp32"]).sum())
                union = int((got | masks["fp32"]).sum())
                overlap[variant][0] += inter
                overlap[variant][1] += union
                if union:
                    worst[variant] = min(worst[variant], inter / union)
        for variant in backends:
            results[variant][name] = {
                "photos": count,
                "agreement": round(overlap[variant][0] / max(overlap[variant][1], 1), 4),
                "gt_iou": round(truth[variant].compute()["iou"], 4),
                "worst_photo": round(worst[variant], 3),
            }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "src/unetbg/weights/person.pth"))
    parser.add_argument("--calibration", type=int, default=32, help="training photos per source")
    parser.add_argument("--variants", default="plain,tail,tail_gates")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--limit", type=int, default=None, help="first N photos of each split")
    args = parser.parse_args(argv)

    reference = ModelInference(args.checkpoint, device="cpu", backend="openvino")
    # The fp32 load exported the graph into the data dir's cache: the variants read it.
    graph = reference._export_cache("openvino").path(reference.preprocessing.image_size)
    items = calibration_inputs(reference, args.data, args.calibration)
    threads = torch.get_num_threads()
    backends = {"fp32": reference.backend}
    for variant in args.variants.split(","):
        backends[variant] = quantised_backend(graph, variant, items, threads)
    results = compare(reference, backends, args.data, args.limit)
    print(json.dumps(results, indent=1))
    print_table(results)
    return 0


def print_table(results: dict) -> None:
    print("\n| variant | source | photos | agreement | gt IoU | Δ gt IoU | worst photo |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for variant, by_source in results.items():
        for name, row in by_source.items():
            drop = row["gt_iou"] - results["fp32"][name]["gt_iou"]
            print(
                f"| {variant} | {name} | {row['photos']} | {row['agreement']:.4f} | "
                f"{row['gt_iou']:.4f} | {drop:+.4f} | {row['worst_photo']:.3f} |"
            )


if __name__ == "__main__":
    raise SystemExit(main())
