"""``ModelInference``: the public Python API for person cut-outs.

>>> from unetbg import ModelInference
>>> mi = ModelInference("runs/best_model.pth")              # doctest: +SKIP
>>> mi.remove_background("me.jpg", "me.png")                 # doctest: +SKIP
>>> summary = mi.batch_process("photos/", "cutouts/", kind="mask")  # doctest: +SKIP

The checkpoint is loaded once; every method reuses the model. :class:`ModelCache` keeps
the loaded models of a long-running process (worker, HTTP API, web page). Outputs always keep the
input's width and height (after EXIF orientation). Folder runs share their planning and
per-image processing with the CLI, the Celery tasks and the web page
(:mod:`unetbg.removal`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from unetbg.durable import file_sha256
from unetbg.edges import refine_all
from unetbg.images import read_image, save_image_atomic, to_rgb_array
from unetbg.model import Preprocessing, load_model, resolve_device
from unetbg.model.predict import Box, letterbox, network_logits, restore_probabilities
from unetbg.removal import (
    BatchSummary,
    ItemResult,
    OutputOptions,
    PipelineLimits,
    PlannedItem,
    RunOptions,
    load_background,
    normalize_format,
    plan_folder,
    process_images,
    render_output,
    save_params,
)
from unetbg.settings import get_settings

log = logging.getLogger(__name__)
#: The one line per model load that says which backend runs it (``auto`` resolved):
#: workers log it; a command that runs the model itself shows it on stderr
#: (:func:`say_backend_choices`).
backend_log = logging.getLogger(f"{__name__}.backend")


def say_backend_choices() -> None:
    """Show :data:`backend_log`'s lines on stderr, once set up per process: for commands
    that load the model in this process (``remove-dir`` without a broker), where no
    logging is configured and the choice would otherwise go unsaid."""
    if not backend_log.handlers:
        handler = logging.StreamHandler()  # stderr
        handler.setFormatter(logging.Formatter("%(message)s"))
        backend_log.addHandler(handler)
        backend_log.setLevel(logging.INFO)


ImageInput = str | os.PathLike | Image.Image | np.ndarray


class ModelInference:
    """A loaded checkpoint, ready to predict masks and write cut-outs.

    ``run``: how the model runs (:class:`unetbg.removal.RunOptions`), or its fields as
    keywords (``device=``, ``batch_size=``, ``backend=``, and the
    switches that override the checkpoint's preprocessing, ``None`` keeping what it
    says). ``device``: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"`` or
    ``"cuda:N"``; asking for CUDA without a GPU raises ``RuntimeError``. ``batch_size``
    images are run through the network together (default: the backend's own,
    :data:`unetbg.backends.DEFAULT_BATCH`). ``backend``: ``"auto"`` (default: the
    fastest installed for the device, :data:`unetbg.backends.AUTO_ORDER`), ``"torch"``,
    ``"onnxruntime"`` or ``"openvino"`` (CPU; extras ``unetbg[onnxruntime]``,
    ``unetbg[openvino]``), see :mod:`unetbg.backends`; the exported ones keep their graph
    under the data dir (``exported/``), so the next load skips the export. ``channels_last`` (default on)
    and ``amp`` (default: on CUDA only; float16 there, bfloat16 on the CPU) set how the
    torch backend runs. ``max_pixels`` overrides the decompression-bomb limit for files
    read here. ``fuse`` (default on): run the model with batch norms folded and decoder
    concatenations split (:mod:`unetbg.model.fuse`; same outputs to float rounding, ~40 %
    faster on the CPU, docs/performance.md). ``limits``: threads and queue depths of the
    folder loop (:class:`unetbg.removal.PipelineLimits`; default :func:`default_limits`).
    A bad checkpoint raises :class:`unetbg.model.CheckpointError`. Without
    ``checkpoint_path`` the default model that ships with unetbg is used
    (:mod:`unetbg.weights`); the job database is not consulted here
    (``unetbg.jobs.resolve_checkpoint("best")`` does that).
    """

    def __init__(
        self,
        checkpoint_path: str | os.PathLike | None = None,
        run: RunOptions | None = None,
        *,
        channels_last: bool | None = None,
        amp: bool | None = None,
        max_pixels: int | None = None,
        fuse: bool = True,
        limits: PipelineLimits | None = None,
        **run_fields: Any,
    ) -> None:
        if run is not None and run_fields:
            raise TypeError("pass either run or its fields as keywords, not both")
        run = run or RunOptions.take(run_fields)
        if run_fields:
            raise TypeError(f"unexpected keyword arguments: {', '.join(run_fields)}")
        if checkpoint_path is None:
            from unetbg.weights import default_checkpoint

            checkpoint_path = default_checkpoint()
            if checkpoint_path is None:
                raise ValueError(
                    "no checkpoint given and no default model (UNETBG_DEFAULT_MODEL=none, "
                    "or an installation without unetbg/weights/person.pth)"
                )
            log.info("using the default model %s", checkpoint_path)
        self.checkpoint_path = Path(checkpoint_path)
        self.run = run
        self.device: torch.device = resolve_device(run.device)
        self.batch_size = run.batch_size  # None until the backend is chosen: its own
        self.channels_last = channels_last
        self.amp = amp
        self.max_pixels = max_pixels
        t0 = time.perf_counter()
        self.model, self.checkpoint = load_model(self.checkpoint_path, device=self.device)
        self.preprocessing = Preprocessing.from_dict(self.checkpoint["preprocessing"]).overridden(
            **run.checkpoint_overrides()
        )
        self.limits = limits or default_limits(self.device)
        self.set_backend(run.backend, fuse)
        log.info(
            "loaded %s (epoch %s, image_size %d) on %s in %.1fs",
            self.checkpoint_path,
            self.checkpoint.get("epoch"),
            self.preprocessing.image_size,
            self.device,
            time.perf_counter() - t0,
        )

    def __repr__(self) -> str:
        return (
            f"ModelInference({str(self.checkpoint_path)!r}, device={str(self.device)!r}, "
            f"batch_size={self.batch_size})"
        )

    # -- prediction -------------------------------------------------------------------

    def set_backend(self, backend: str = "torch", fuse: bool = True) -> None:
        """Run the network with ``backend`` from now on (see the class docstring).
        ``auto`` is resolved here, once per load (:func:`unetbg.backends.choose_backend`):
        :attr:`backend_name` is what runs, :attr:`backend_said` the line that says so."""
        from unetbg.backends import choose_backend, default_batch_size

        chosen = choose_backend(
            backend,
            self.model,
            self.preprocessing.image_size,
            self.device,
            fuse=fuse,
            channels_last=self.channels_last,
            amp=self.amp,
            cache=self._export_cache(backend),
        )
        self.backend, self.backend_name, self.backend_said = (
            chosen.backend,
            chosen.name,
            chosen.said(),
        )
        #: What a request that names no batch size runs with here (the backend's own).
        self.default_batch_size = default_batch_size(self.device.type, chosen.name)
        self.batch_size = self.run.batch_size or self.default_batch_size
        self.run = replace(self.run, backend=backend)
        backend_log.info("%s", self.backend_said)

    def _export_cache(self, backend: str):
        """Where an exported backend keeps its graph: ``DATA_DIR/exported``, named by the
        checkpoint file's sha256 (:class:`unetbg.backends.ExportCache`); ``None`` where
        nothing is exported (torch, or a GPU)."""
        from unetbg.backends import ExportCache

        if backend == "torch" or self.device.type != "cpu":
            return None
        folder = get_settings().data_dir / "exported"
        return ExportCache(folder, file_sha256(self.checkpoint_path))

    def prepare(self, image: np.ndarray) -> tuple[torch.Tensor, Box]:
        """One ``H×W×3`` uint8 RGB array as the network's input (letterboxed and
        normalised on the CPU) and the box to map the prediction back. The removal
        loop calls it in its reader threads, ahead of the network."""
        p = self.preprocessing
        with torch.inference_mode():
            return letterbox(
                _check_rgb(image),
                p.image_size,
                torch.tensor(p.mean).view(3, 1, 1) * 255.0,
                torch.tensor(p.std).view(3, 1, 1) * 255.0,
            )

    def predict_prepared(self, prepared: Sequence[tuple[torch.Tensor, Box]]) -> list[np.ndarray]:
        """``prepare``'d images -> ``H×W`` float32 person probabilities in [0, 1],
        ``batch_size`` images per forward pass, not yet refined (:meth:`refine`)."""
        results: list[np.ndarray] = []
        with torch.inference_mode():
            for start in range(0, len(prepared), self.batch_size):
                chunk = prepared[start : start + self.batch_size]
                batch = torch.stack([tensor for tensor, _ in chunk])
                logits = network_logits(self.backend, batch, self.preprocessing)
                results.extend(restore_probabilities(logits, [box for _, box in chunk]))
        return results

    def refine(self, image: np.ndarray, probability: np.ndarray) -> np.ndarray:
        """What :meth:`predict_prepared` gave for the ``H×W×3`` uint8 RGB ``image`` ->
        the final probability: edges refined when the preprocessing says so
        (:mod:`unetbg.edges`), else ``probability`` itself. The removal loop calls it
        in its writer threads, beside the network."""
        return refine_all([probability], [image], self.preprocessing)[0]

    def predict_arrays(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """``H×W×3`` uint8 RGB arrays -> ``H×W`` float32 person probabilities in [0, 1]."""
        probs = self.predict_prepared([self.prepare(image) for image in images])
        return refine_all(probs, images, self.preprocessing)

    def load(self, image: ImageInput) -> np.ndarray:
        """Any accepted input (path, PIL image, array) -> ``H×W×3`` uint8 RGB array."""
        if isinstance(image, str | os.PathLike):
            return read_image(image, self.max_pixels)
        return to_rgb_array(image)

    def predict_mask(
        self, images: ImageInput | Sequence[ImageInput], threshold: float | None = None
    ) -> list[np.ndarray]:
        """Person probability (``H×W`` float32 in [0, 1]) for each image, batched.

        ``images`` is a list of paths, PIL images or arrays, or one of them alone (the
        result is still a list). With ``threshold`` the masks are boolean
        (``probability >= threshold``). Unreadable files raise
        :class:`unetbg.images.ImageError`.
        """
        if isinstance(images, str | os.PathLike | Image.Image | np.ndarray):
            images = [images]
        probs = self.predict_arrays([self.load(image) for image in images])
        if threshold is None:
            return probs
        return [p >= threshold for p in probs]

    # -- outputs ----------------------------------------------------------------------

    def remove_background(
        self,
        input: ImageInput,
        output: str | os.PathLike | None = None,
        options: OutputOptions | None = None,
    ) -> Image.Image:
        """Render one output (default: soft RGBA cut-out) and return it as a PIL image.

        With ``output`` the image is also written there atomically; without ``options``
        the format follows ``output``'s suffix (``.png``, ``.webp``, ``.jpg``/``.jpeg``;
        a suffix naming another format than ``options.format`` is an error). The output
        has the input's width and height. Refuses to overwrite the input.
        """
        out = None if output is None else Path(output)
        suffix_format = _format_of(out)
        if options is None:
            options = OutputOptions(format=suffix_format or "png")
        elif suffix_format is not None and suffix_format != options.format:
            raise ValueError(
                f"output {out} has a {suffix_format} suffix but format is {options.format}"
            )
        is_path = isinstance(input, str | os.PathLike)
        if out is not None and is_path and out.resolve() == Path(input).resolve():
            raise ValueError(f"refusing to overwrite the input {input}")
        rgb = self.load(input)
        (prob,) = self.predict_arrays([rgb])
        image = render_output(rgb, prob, options, load_background(options))
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            pil_format, params = save_params(options)
            save_image_atomic(image, out, pil_format, **params)
        return image

    def batch_process(
        self,
        input_dir: str | os.PathLike,
        output_dir: str | os.PathLike,
        options: OutputOptions | None = None,
        overwrite: bool = False,
        follow_symlinks: bool = False,
        on_result: Callable[[PlannedItem, ItemResult], None] | None = None,
        **option_fields: Any,
    ) -> BatchSummary:
        """Process every image under ``input_dir`` into ``output_dir`` (sub-folders kept).

        Pass ``options`` or its fields as keywords (``kind="mask"``, ``format="webp"``,
        …). Planning follows :func:`unetbg.removal.plan_folder` (existing outputs are
        skipped unless ``overwrite``); unreadable images are reported in the summary,
        never raised. ``on_result(item, result)`` is called as each image finishes.
        """
        if options is not None and option_fields:
            raise TypeError("pass either options or option keywords, not both")
        options = options or OutputOptions(**option_fields)
        t0 = time.perf_counter()
        items = plan_folder(
            input_dir,
            output_dir,
            output_format=options.format,
            follow_symlinks=follow_symlinks,
            overwrite=overwrite,
        )
        results = process_images(
            self, items, options, on_result, self.max_pixels, limits=self.limits
        )
        summary = BatchSummary(items, results, time.perf_counter() - t0)
        log.info(
            "%s -> %s: %d written, %d failed, %d skipped in %.1fs",
            input_dir,
            output_dir,
            summary.processed,
            summary.failed,
            summary.skipped,
            summary.seconds,
        )
        return summary


class ModelCache:
    """Loaded models, shared by the requests of one process: the Celery worker's chunks,
    the HTTP API's removal queue and the web page's sessions all use one of these.

    The key is the checkpoint's resolved path, its file identity (``st_mtime_ns``,
    ``st_size``), the run options but the batch size (set on each use) and
    ``max_pixels``: a checkpoint rewritten in place (a training run saving
    ``best_model.pth`` again) is loaded afresh, and its old version dropped. At most
    ``size`` models stay loaded, the least recently used going first (GPU memory is the
    limit). Loads happen under a lock, so two threads never load the same model twice.
    ``on_load(path, seconds)`` is told of every load (the metrics count them).
    """

    def __init__(self, size: int = 1, on_load: Callable[[str, float], None] | None = None) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.size, self.on_load = size, on_load
        self._models: OrderedDict[tuple, ModelInference] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(checkpoint: str | os.PathLike, run: RunOptions, max_pixels: int | None = None) -> tuple:
        """What tells two loaded models apart (raises ``OSError`` for a missing file)."""
        path = Path(checkpoint).expanduser().resolve()
        stat = path.stat()
        return (str(path), stat.st_mtime_ns, stat.st_size, run.model_key(), max_pixels)

    def get(
        self, checkpoint: str | os.PathLike, run: RunOptions, max_pixels: int | None = None
    ) -> ModelInference:
        """The model for ``checkpoint`` run as ``run`` says, loaded now if needed."""
        key = self.key(checkpoint, run, max_pixels)
        with self._lock:
            model = self._models.get(key)
            if model is None:
                model = self._load(key, run, max_pixels)
            self._models.move_to_end(key)
            model.batch_size = run.batch_size or model.default_batch_size
            return model

    def _load(self, key: tuple, run: RunOptions, max_pixels: int | None) -> ModelInference:
        path, identity = key[0], key[1:3]
        # The file's older versions go first: they are never asked for again.
        for stale in [k for k in self._models if k[0] == path and k[1:3] != identity]:
            del self._models[stale]
        while len(self._models) >= self.size:
            self._models.popitem(last=False)
        started = time.perf_counter()
        model = ModelInference(path, run, max_pixels=max_pixels)
        if self.on_load is not None:
            self.on_load(path, time.perf_counter() - started)
        self._models[key] = model
        return model


def default_limits(device: torch.device) -> PipelineLimits:
    """Pipeline threads for ``device``: on the CPU one reader and two writers at lower
    priority (the network needs the cores); on a GPU enough readers and writers on
    the CPU cores to keep the device busy, at normal priority."""
    if device.type != "cuda":
        return PipelineLimits()
    cpus = os.cpu_count() or 4
    return PipelineLimits(readers=max(2, cpus // 4), writers=max(2, cpus // 2), helper_nice=0)


def _check_rgb(image: object) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise ValueError(
            f"expected a non-empty H×W×3 uint8 RGB array, got {image.dtype} {image.shape}"
        )
    return image


def _format_of(path: Path | None) -> str | None:
    """The output format a file suffix names, or ``None`` (no path, unknown suffix)."""
    if path is None:
        return None
    try:
        return normalize_format(path.suffix)
    except ValueError:
        return None
