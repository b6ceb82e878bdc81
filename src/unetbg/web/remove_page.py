"""The "Remove background" view: upload photos, pick a checkpoint and an output,
see the original, the mask over it and the result, and download the result at
the original size.

Each upload is handled on its own: a file that cannot be read, is too large or
fails in the model gets an error naming it, and the others still come out.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st
from PIL import Image

from unetbg.settings import CHECKPOINT_ENV
from unetbg.web import render as pictures

#: Extensions the uploader offers. The content decides how a file is read
#: (unetbg.images), so a PNG named .jpg still works.
IMAGE_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif"]

#: Label -> (OutputOptions kind, uses a threshold).
OUTPUTS = {
    "Cut-out, soft alpha": ("cutout", False),
    "Cut-out, hard mask": ("cutout", True),
    "Mask only": ("mask", False),
    "Solid colour background": ("color", False),
    "Background image": ("background", False),
}

FORMATS = {"PNG": ("png", "image/png"), "WebP": ("webp", "image/webp")}


_OTHER_FILE = "Another file…"


@dataclass(frozen=True)
class Prediction:
    """What the model said about one upload, kept across reruns of the session."""

    probability: np.ndarray
    seconds: float
    device: str


def render() -> None:
    """Draw the view (a Streamlit page function)."""
    from unetbg.settings import get_settings

    settings = get_settings()
    st.title("Remove background")
    with st.sidebar:
        st.header("Model")
        model = _checkpoint_picker()
        device = st.selectbox("Device", _devices(), help="auto: the GPU if there is one.")
        st.header("Output")
        output = _output_picker()

    checkpoint = None if model is None else Path(model.path)
    if checkpoint is not None:
        from unetbg.model.checkpoint import CheckpointError

        # Loaded as soon as the view opens (once per process), so the first upload
        # waits only for its own prediction.
        try:
            loaded = _load(checkpoint, device)
        except (CheckpointError, OSError, RuntimeError, ValueError) as exc:
            st.error(f"Cannot use the checkpoint {checkpoint}: {exc}")
            checkpoint = None
        else:
            st.caption(f"Model: {_model_label(model)} · {checkpoint} · device {loaded.device}")

    uploads = st.file_uploader(
        f"Photos with people (up to {settings.max_upload_mb} MB each)",
        type=IMAGE_TYPES,
        accept_multiple_files=True,
        # Refused in the browser before upload, also when the page runs without
        # `unetbg web` (which sets the same limit server-wide).
        max_upload_size=settings.max_upload_mb,
    )
    if not uploads:
        st.info("Upload one or more photos: JPEG, PNG, WebP, BMP, TIFF or GIF.")
        return
    if checkpoint is None or output is None:
        return  # the sidebar or the error above says what is missing

    model_key = loaded.key
    cache: dict = st.session_state.setdefault("predictions", {})
    # Forget predictions for files that were removed from the uploader.
    current = {(upload.file_id, model_key) for upload in uploads}
    for key in list(cache):
        if key not in current:
            del cache[key]

    limit = settings.max_upload_mb * 1024 * 1024
    for upload in uploads:
        with st.container(border=True):
            _one_upload(upload, loaded, model_key, cache, output, limit, settings, model)


# ---------------------------------------------------------------- sidebar pickers


def _checkpoint_picker():
    """The model chosen in the sidebar (a :class:`unetbg.jobs.ModelChoice`), or None
    with the reason shown. ``best`` is chosen again at each visit, as every command
    chooses it, and says which model it is and why."""
    startup = (os.environ.get(CHECKPOINT_ENV) or "best").strip()
    choices: dict[str, str | None] = {}  # label -> what --checkpoint would take
    if startup != "best":
        choices[f"Startup checkpoint ({startup})"] = startup
    best = _choice("best", quiet=True)
    if best is not None:
        choices[f"Best: {_model_label(best)}"] = "best"
    choices.update(_registered_choices())
    from unetbg.weights import default_checkpoint

    shipped = default_checkpoint()
    if shipped is not None and shipped.is_file():
        choices[f"Default model ({shipped.name}, shipped with unetbg)"] = "default"
    choices[_OTHER_FILE] = None
    label = st.selectbox("Checkpoint", list(choices), help=_CHECKPOINT_HELP)
    spec = choices[label]
    if spec is None:
        spec = st.text_input("Checkpoint file", placeholder="/path/to/model_best.pth")
        if not spec:
            st.warning("Type the path of a checkpoint file.")
            return None
    chosen = _choice(spec)
    if chosen is not None and spec == "best":
        for warning in chosen.warnings:
            st.warning(warning)
        st.caption(chosen.reason)
    return chosen


def _choice(spec: str, quiet: bool = False):
    """:func:`unetbg.jobs.choose_checkpoint`, its refusal shown (unless ``quiet``)."""
    from sqlalchemy.exc import SQLAlchemyError

    from unetbg import jobs
    from unetbg.db.schema import SchemaOutOfDate

    try:
        return jobs.choose_checkpoint(spec)
    except (jobs.NoCheckpointError, SchemaOutOfDate, SQLAlchemyError) as exc:
        if not quiet:
            st.error(str(exc))
        return None


def _model_label(model) -> str:
    """``checkpoint 3``, ``the default model`` or a file's name, for people."""
    return model.name if model.checkpoint_id or model.default else Path(model.path).name


_CHECKPOINT_HELP = (
    "Preselected: the checkpoint given with `unetbg web --checkpoint` (or "
    "UNETBG_CHECKPOINT), else 'best': the default model that ships with unetbg, unless "
    "a registered checkpoint's validation IoU beats it on a validation set both were "
    "scored on (the caption below says which, and why)."
)


def _registered_choices() -> dict[str, str]:
    """Registered checkpoints by id, newest first; empty (with a note) if the DB is
    unusable."""
    from sqlalchemy.exc import SQLAlchemyError

    from unetbg import jobs
    from unetbg.db.schema import SchemaOutOfDate, ensure_schema

    try:
        ensure_schema()
        registered = jobs.list_checkpoints()
    except (SchemaOutOfDate, SQLAlchemyError) as exc:
        st.caption(f"Registered checkpoints unavailable: {exc}")
        return {}
    return {f"#{ckpt.id}: {_describe(ckpt)}": str(ckpt.id) for ckpt in registered}


def _describe(ckpt) -> str:
    parts = [Path(ckpt.path).name]
    if ckpt.epoch is not None:
        parts.append(f"epoch {ckpt.epoch}")
    if ckpt.val_iou is not None:
        parts.append(f"val IoU {ckpt.val_iou:.3f}")
    if ckpt.job_id:
        parts.append(f"job {ckpt.job_id}")
    return ", ".join(parts)


def _devices() -> list[str]:
    import torch

    return ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _output_picker():
    """The chosen output as ``(OutputOptions, format label)``, or None if incomplete."""
    from unetbg.images import ImageError, read_image
    from unetbg.removal import OutputOptions

    label = st.radio("Result", list(OUTPUTS))
    kind, thresholded = OUTPUTS[label]
    threshold = None
    color = (255, 255, 255)
    background = None
    if thresholded:
        threshold = st.slider("Threshold", 0.05, 0.95, 0.5, 0.05, help="Person where p ≥ this.")
    if kind == "color":
        hex_color = st.color_picker("Colour", "#FFFFFF")
        color = tuple(int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    if kind == "background":
        file = st.file_uploader("Background photo", type=IMAGE_TYPES, key="background")
        if file is None:
            st.warning("Upload a background photo.")
            return None
        try:
            background = read_image(file)
        except ImageError as exc:
            st.error(f"{file.name}: {exc.reason}")
            return None
    fmt_label = st.radio("Download format", list(FORMATS), horizontal=True)
    options = OutputOptions(
        kind=kind,
        threshold=threshold,
        color=color,
        background=background,
        format=FORMATS[fmt_label][0],
    )
    return options, fmt_label


# ---------------------------------------------------------------- one upload


def _load(checkpoint: Path, device: str):
    from unetbg.web.common import load_model

    return load_model(checkpoint, device)


def _one_upload(upload, loaded, model_key, cache, output, limit, settings, model) -> None:
    from unetbg.images import ImageError, read_image
    from unetbg.removal import encode_output

    options, fmt_label = output
    name = upload.name
    if upload.size > limit:
        st.error(
            f"{name}: {upload.size / 1024 / 1024:.1f} MB is over the upload limit of "
            f"{settings.max_upload_mb} MB (UNETBG_MAX_UPLOAD_MB)."
        )
        return
    upload.seek(0)
    try:
        rgb = read_image(upload, max_pixels=settings.max_image_pixels)
    except ImageError as exc:
        st.error(f"{name}: {exc.reason}")
        return

    key = (upload.file_id, model_key)
    prediction = cache.get(key)
    fresh = prediction is None
    if fresh:
        try:
            prediction = _predict(loaded, rgb)
        except (RuntimeError, ValueError, MemoryError) as exc:
            st.error(f"{name}: the model failed on this image: {exc}")
            return
        cache[key] = prediction

    result = _compose(rgb, prediction.probability, options)
    ext, mime = FORMATS[fmt_label]
    data = encode_output(result, options)
    height, width = rgb.shape[:2]
    timing = f"{prediction.seconds:.2f} s" + ("" if fresh else ", computed earlier")
    # Which model made it: a result is only as good as the model named here.
    made_by = f"{_model_label(model)} ({model.ident})"
    st.markdown(f"**{name}** · {width}×{height} · {made_by} · {prediction.device} · {timing}")
    note = no_person_note(name, prediction.probability)
    if note:
        st.warning(note)
    original = Image.fromarray(rgb)
    small = pictures.preview(original)
    small_prob = np.asarray(
        Image.fromarray(prediction.probability).resize(small.size, Image.Resampling.BILINEAR)
    )
    columns = st.columns(3)
    columns[0].image(small, caption="Original")
    columns[1].image(pictures.overlay(np.asarray(small), small_prob), caption="Mask overlay")
    columns[2].image(pictures.on_checkerboard(pictures.preview(result)), caption="Result")
    out_name = f"{Path(name).stem}.{ext}"
    st.download_button(
        f"Download {out_name}",
        data,
        file_name=out_name,
        mime=mime,
        key=f"download-{upload.file_id}",
        # A download needs no rerun of the page (and no second model pass).
        on_click="ignore",
    )


def no_person_note(name: str, probability: np.ndarray) -> str | None:
    """The warning shown under a result that shows no person (``removal.presence``),
    worded as ``unetbg remove`` says it; None when it shows one."""
    from unetbg.removal import no_person, person_share

    if not no_person(person_share(probability)):
        return None
    return f"no person found in {name} (under 0.1 % of the photo shows one)"


def _predict(loaded, rgb: np.ndarray) -> Prediction:
    with loaded.lock:
        start = time.perf_counter()
        probability = loaded.inference.predict_arrays([rgb])[0]
        seconds = time.perf_counter() - start
    return Prediction(probability=probability, seconds=seconds, device=loaded.device)


def _compose(rgb: np.ndarray, probability: np.ndarray, options) -> Image.Image:
    from unetbg.removal import render_output

    # The sidebar already read the background upload into an array.
    return render_output(rgb, probability, options, background=options.background)
