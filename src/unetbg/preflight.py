"""``unetbg coco verify``: is this COCO folder, this machine and the model ready for a run?

The dataset checks of :mod:`unetbg.data.checks` (structure, annotations, images on
disk, decoding a sample, one DataLoader batch), then the device and one forward pass
of an untrained model on that batch. It sits above ``data`` and ``model`` so that
``data`` never builds a model (docs/architecture.md).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from unetbg.data.checks import (
    FAIL,
    PASS,
    SKIP,
    Check,
    decode_sample_check,
    loader_check,
    quick,
    shape_text,
)
from unetbg.data.coco import CocoError, CocoPersons
from unetbg.data.filters import PersonFilter


@dataclass
class VerifyReport:
    """PASS/FAIL per check, and the device a model would run on."""

    root: str
    split: str
    device: str | None
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def _names(persons: CocoPersons, ids: list[int], limit: int = 5) -> str:
    shown = ", ".join(persons.image_info(i)["file_name"] for i in ids[:limit])
    return shown + (f", … (+{len(ids) - limit})" if len(ids) > limit else "")


def verify(
    root: str | os.PathLike = "COCO",
    split: str = "val",
    sample: int = 8,
    batch_size: int = 4,
    image_size: int = 128,
    device: str = "auto",
    filter: PersonFilter | None = None,
    progress: bool = False,
) -> VerifyReport:
    """Structure, annotations, decoding a sample, one DataLoader batch and a model forward pass.

    A failed step marks the steps that depend on it as SKIP rather than raising.
    """
    report = VerifyReport(str(root), split, device=None)
    add = report.checks.append

    q = quick(root, split)
    if q.ok:
        add(Check("structure", PASS, "; ".join(c.detail for c in q.checks[1:])))
    else:
        add(Check("structure", FAIL, "; ".join(f"missing {m}" for m in q.missing)))

    persons = None
    try:
        persons = CocoPersons(root, split, filter)
        s = persons.stats()
        add(
            Check(
                "annotations",
                PASS,
                f"{Path(s.annotation_file).name}: {s.images_listed} images, {s.person_annotations} person "
                f"annotations ({s.valid_person_annotations} valid, {s.crowd_annotations} crowd)",
            )
        )
    except (CocoError, ValueError) as exc:
        add(Check("annotations", FAIL, str(exc)))

    if persons is None:
        for name in ("images on disk", "decode sample", "data loader"):
            add(Check(name, SKIP, "needs the annotations"))
    else:
        listed = len(persons.image_ids) + len(persons.missing)
        if persons.missing:
            add(
                Check(
                    "images on disk",
                    FAIL,
                    f"{len(persons.missing)} of {listed} listed images missing: {_names(persons, persons.missing)}",
                )
            )
        else:
            add(Check("images on disk", PASS, f"all {listed} listed images present"))
        add(decode_sample_check(persons, sample, progress))

    batch_tensors = None
    if persons is not None and len(persons):
        batch_tensors, check = loader_check(persons, batch_size, image_size)
        add(check)
    elif persons is not None:
        add(Check("data loader", FAIL, "no image on disk to load"))

    torch_device, check = _device_check(device)
    report.device = str(torch_device) if torch_device is not None else None
    add(check)
    if batch_tensors is None or torch_device is None:
        add(Check("model forward", SKIP, "needs a batch and a device"))
    else:
        add(_forward_check(batch_tensors, torch_device))
    return report


def _device_check(name: str):
    import torch

    try:
        from unetbg.model import resolve_device

        device = torch.device(resolve_device(name))
    except (ImportError, RuntimeError, ValueError) as exc:
        return None, Check("device", FAIL, str(exc))
    if device.type == "cuda":
        return device, Check("device", PASS, f"cuda: {torch.cuda.get_device_name(device)}")
    why = "requested" if name == "cpu" else "no CUDA device available"
    return device, Check("device", PASS, f"{device.type} ({why})")


def _forward_check(batch: dict, device) -> Check:
    import torch

    try:
        from unetbg.model import ModelConfig, create_model

        cfg = ModelConfig()
        model = create_model(cfg).to(device).eval()
        start = time.perf_counter()
        with torch.inference_mode():
            out = model(batch["image"].to(device))
        seconds = time.perf_counter() - start
    except (ImportError, RuntimeError, ValueError) as exc:
        return Check("model forward", FAIL, f"{type(exc).__name__}: {exc}")
    logits = out["mask"]
    expected = (batch["image"].shape[0], 1, *batch["image"].shape[2:])
    if tuple(logits.shape) != expected or not torch.isfinite(logits).all():
        return Check(
            "model forward",
            FAIL,
            f"mask output {shape_text(logits)}, expected {'×'.join(map(str, expected))}",
        )
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return Check(
        "model forward",
        PASS,
        f"{cfg.encoder} U-Net ({params:.1f}M parameters, untrained) -> mask {shape_text(logits)} in {seconds:.2f} s",
    )
