"""Turn a run's ``best_model.pth`` (or another of its checkpoints) into the model that
ships: ``unetbg.weights``.

The shipped file is the run's checkpoint with float16 weights
(:func:`unetbg.model.half_precision`) and a ``card`` entry that says where it came from:
the run's resolved config and the command that trains it again, the sha256 of each data
source's manifest (the sorted names of the photos trained on and validated on), the
run's figures, and how closely its masks agree with the float32 weights it came from.
A conversion whose masks disagree (IoU below ``min_agreement``) is refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetbg.data.sources import manifest_sha256, unique_names
from unetbg.edges import refine_all
from unetbg.model import (
    Preprocessing,
    SegmentationMeter,
    create_model,
    half_precision,
    load_checkpoint,
    predict_probabilities,
    save_checkpoint,
)
from unetbg.model.config import ModelConfig
from unetbg.training.config import TrainConfig

#: Masks of the float16 file against the float32 one, IoU at threshold 0.5.
MIN_AGREEMENT = 0.995


def data_manifests(cfg: TrainConfig) -> list[dict[str, Any]]:
    """Each source of ``cfg`` with its image counts and the sha256 of each part's names."""
    out = []
    sources = cfg.sources()
    for source, name in zip(sources, unique_names(sources), strict=True):
        entry: dict[str, Any] = {"name": name, "spec": source.spec()}
        for split in ("train", "val"):
            coco_split = cfg.train_split if split == "train" else cfg.val_split
            reader = source.reader(coco_split if source.kind == "coco" else split, cfg.val_percent)
            entry[f"{split}_images"] = len(reader)
            entry[f"{split}_manifest_sha256"] = manifest_sha256(reader)
        out.append(entry)
    return out


def _model(checkpoint: dict[str, Any]) -> torch.nn.Module:
    config = ModelConfig.from_dict(checkpoint["model_config"])
    model = create_model(config.__class__(**{**config.to_dict(), "encoder_weights": None}))
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def mask_agreement(
    reference: dict[str, Any], other: dict[str, Any], images: Sequence[np.ndarray]
) -> float:
    """Pooled IoU of the two checkpoints' masks (threshold 0.5) over ``images``, each
    made as the reference's preprocessing says (edge refinement included)."""
    preprocessing = Preprocessing.from_dict(reference["preprocessing"])
    device = torch.device("cpu")
    ref, got = (
        refine_all(
            predict_probabilities(_model(c), list(images), preprocessing, device),
            images,
            preprocessing,
        )
        for c in (reference, other)
    )
    meter = SegmentationMeter(threshold=0.5)
    meter.update(got, [(r >= 0.5).astype(np.uint8) for r in ref])
    return meter.compute()["iou"]


def ship(
    run_dir: str | os.PathLike,
    destination: str | os.PathLike,
    agreement_images: Sequence[np.ndarray],
    command: str,
    min_agreement: float = MIN_AGREEMENT,
    checkpoint: str | os.PathLike | None = None,
    flip_average: bool = False,
    refine_edges: bool = False,
    evaluation: dict[str, Any] | None = None,
    alpha_curve: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Write ``run_dir``'s best model to ``destination`` as the shipped model; its card.

    ``checkpoint`` ships another checkpoint of the run than ``best_model.pth`` (e.g. one
    epoch's weight average); ``flip_average`` makes the shipped model average each
    prediction with the mirrored one by default, ``refine_edges`` move its outlines
    onto the photo's edges by default (:mod:`unetbg.edges`), ``alpha_curve`` (low, high)
    clears the faint alpha the model is sure is background. ``evaluation`` (``unetbg evaluate
    --json`` of the weights shipped) goes on the card; by default the run's own
    ``evaluation.json``, when there is one.
    """
    run_dir = Path(run_dir)
    source = Path(checkpoint) if checkpoint is not None else run_dir / "best_model.pth"
    checkpoint = load_checkpoint(source)
    cfg = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    # Every field written out, so that the file says what it does whatever the defaults
    # of a later version are.
    checkpoint["preprocessing"] = (
        Preprocessing.from_dict(checkpoint["preprocessing"])
        .overridden(
            flip_average=flip_average,
            refine_edges=refine_edges,
            alpha_low=alpha_curve[0] if alpha_curve else None,
            alpha_high=alpha_curve[1] if alpha_curve else None,
            alpha_curve=True if alpha_curve else None,
        )
        .to_dict()
    )
    shipped = half_precision(checkpoint)
    agreement = mask_agreement(checkpoint, shipped, agreement_images)
    if agreement < min_agreement:
        raise ValueError(
            f"float16 masks agree with float32 at IoU {agreement:.4f} < {min_agreement}: "
            "not shipped"
        )
    evaluation_file = run_dir / "evaluation.json"
    # The epochs that made these weights: not those the run went on with afterwards.
    epoch = checkpoint.get("epoch")
    history = [
        row
        for row in json.loads((run_dir / "metrics.json").read_text())
        if epoch is None or row["epoch"] <= epoch
    ]
    card = {
        "name": "unetbg person",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "config": cfg.to_dict(),
        "data": data_manifests(cfg),
        "epochs_trained": len(history),
        "best_epoch": epoch,
        "training_seconds": round(sum(r["seconds"] for r in history), 1),
        "source_checkpoint": str(source),
        "evaluation": evaluation
        if evaluation is not None
        else json.loads(evaluation_file.read_text())
        if evaluation_file.is_file()
        else None,
        "started_from": _started_from(cfg),
        "fp16_mask_agreement_iou": agreement,
        "agreement_images": len(agreement_images),
    }
    save_checkpoint(destination, shipped | {"card": card})
    return card


def _started_from(cfg: TrainConfig) -> dict[str, Any] | None:
    """What a fine-tuned run's first weights were (``init_weights``): the file, and the
    card of the model it was (its own training is part of this one's)."""
    if not cfg.init_weights:
        return None
    from unetbg.weights import DEFAULT_SPEC, default_checkpoint

    path = default_checkpoint() if cfg.init_weights == DEFAULT_SPEC else Path(cfg.init_weights)
    entry: dict[str, Any] = {"init_weights": cfg.init_weights, "path": str(path)}
    if path is not None and path.is_file():
        card = load_checkpoint(path).get("card") or {}
        keep = ("name", "created", "command", "epochs_trained", "training_seconds", "best_epoch")
        entry["card"] = {k: card[k] for k in keep if k in card}
    return entry
