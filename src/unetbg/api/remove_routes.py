"""``POST /api/remove``: one photo in, its cut-out (or mask, or composite) out, at the
photo's size; the multipart field and ``om`` are rembg's, so rembg clients work as they are.

Options come as form fields or query parameters (rembg's clients use both); a form
field wins. They are checked by :class:`unetbg.removal.OutputOptions`, so a bad value
is refused with the same words as the CLI's.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.responses import Response

from unetbg import jobs
from unetbg.api.config import ApiConfig
from unetbg.api.errors import ApiError
from unetbg.api.rembg import rembg_parameters
from unetbg.api.removal import QueueFull
from unetbg.api.roots import checked_checkpoint
from unetbg.images import read_image
from unetbg.model import CheckpointError
from unetbg.removal import (
    KINDS,
    KindConflict,
    OutputOptions,
    encode_output,
    no_person,
    output_kind,
    output_options,
    person_share,
    render_output,
)

MEDIA_TYPES = {"png": "image/png", "webp": "image/webp", "jpeg": "image/jpeg"}
#: Room in a request body for the form fields and multipart boundaries around the image.
MULTIPART_SLACK = 64 * 1024
#: Seconds a client told "queue full" is asked to wait: about one batch on a CPU.
RETRY_AFTER_S = 2
_TRUE = ("1", "true", "yes", "on")
#: Whether the output shows a person ("yes"/"no") and the share of its pixels that do.
PERSON_FOUND_HEADER = "X-Unetbg-Person-Found"
PERSON_SHARE_HEADER = "X-Unetbg-Person-Share"
#: What ran the network (``auto`` resolved: ``torch``, ``onnxruntime``, ``openvino``).
BACKEND_HEADER = "X-Unetbg-Backend"
#: The 200 answer, as /docs shows it.
ANSWER_DESCRIPTION = (
    "The image; its X-Unetbg-Model header names the model that made it: `id=N` (a "
    "registered checkpoint) or `sha256=…` (the first 12 hex digits; `default` first for "
    "the default model), then `path=…`; X-Unetbg-Backend what ran it (torch, "
    "onnxruntime or openvino). X-Unetbg-Person-Found is `no` when under 0.1 % "
    "of the image shows a person (a miss, or a photo without people), else `yes`; "
    "X-Unetbg-Person-Share gives that share (0-1)."
)


def register(app: FastAPI, config: ApiConfig) -> None:
    """Add ``POST /api/remove`` to ``app``, its body limit taken from ``config``."""

    @app.post(
        "/api/remove",
        summary="Remove the background of one photo",
        response_class=Response,
        responses={
            200: {
                "content": {t: {} for t in MEDIA_TYPES.values()},
                "description": ANSWER_DESCRIPTION,
            },
            400: {"description": "Not an image, too many pixels, or a bad option."},
            413: {"description": "The upload is larger than the server's limit."},
            503: {"description": "Too many images wait for the model (see Retry-After)."},
        },
        # Refused while it is read, before it is spooled whole; the image's own size is
        # checked exactly below.
        max_body_size=2 * config.max_upload_bytes + MULTIPART_SLACK,
    )
    def remove(
        request: Request,
        rembg: Annotated[dict[str, str], Depends(rembg_parameters)],
        file: Annotated[UploadFile, File(description="The photo (JPEG, PNG, WebP, …).")],
        background: Annotated[
            UploadFile | None, File(description="Image to put behind the person.")
        ] = None,
        kind: Annotated[str | None, Form(description=f"One of {', '.join(KINDS)}.")] = None,
        threshold: Annotated[str | None, Form(description="Hard mask at 0-1.")] = None,
        color: Annotated[str | None, Form(description="For kind color: '#fff', 'white'.")] = None,
        format: Annotated[str | None, Form(description="png (default), webp or jpeg.")] = None,
        checkpoint: Annotated[
            str | None, Form(description="best, default, a registered id, a path under a root.")
        ] = None,
        om: Annotated[
            str | None, Form(description="rembg's 'only mask': true = kind mask.")
        ] = None,
    ) -> Response:
        given = {
            "kind": kind,
            "threshold": threshold,
            "color": color,
            "format": format,
            "checkpoint": checkpoint,
            "om": om,
        }
        fields = {k: v if v is not None else request.query_params.get(k) for k, v in given.items()}
        fields |= rembg  # bgc as color; rembg's other parameters were refused
        for upload in (file, background):
            if upload is not None and (upload.size or 0) > config.max_upload_bytes:
                raise ApiError(
                    413,
                    f"upload too large: {upload.filename} has {upload.size:,} bytes, the limit "
                    f"is {config.max_upload_bytes:,} (unetbg serve --max-upload-mb)",
                )
        max_pixels = config.settings.max_image_pixels
        back = None if background is None else read_image(background.file, max_pixels)
        options = _options(fields, back)
        rgb = read_image(file.file, max_pixels)
        spec = config.checkpoint
        if fields["checkpoint"]:
            spec = checked_checkpoint(fields["checkpoint"], config.resolved_roots)
        # Which model made the image is said in every response (X-Unetbg-Model).
        model = jobs.choose_checkpoint(spec, config.settings)
        try:
            prob, backend = request.app.state.removal.probabilities(rgb, model.path)
        except QueueFull as exc:
            raise ApiError(
                503, f"busy: {exc}; try again", {"Retry-After": str(RETRY_AFTER_S)}
            ) from None
        except CheckpointError as exc:
            raise ApiError(400, f"refusing checkpoint {exc}") from None
        image = render_output(rgb, prob, options, back)
        return Response(
            encode_output(image, options),
            media_type=MEDIA_TYPES[options.format],
            headers=_answer_headers(model, backend, prob),
        )


def _answer_headers(model: jobs.ModelChoice, backend: str, probability) -> dict[str, str]:
    """What made the image (model, backend) and whether it shows a person
    (``removal.presence``): a client that sends 10,000 photos finds the misses without
    looking at each image."""
    share = person_share(probability)
    return {
        jobs.MODEL_HEADER: model.header(),
        BACKEND_HEADER: backend,
        PERSON_FOUND_HEADER: "no" if no_person(share) else "yes",
        PERSON_SHARE_HEADER: f"{share:.4f}",
    }


def _options(fields: dict[str, str | None], background) -> OutputOptions:
    """The output options of a request, as ``unetbg remove`` would choose them."""
    kind = fields["kind"]
    if (fields["om"] or "").lower() in _TRUE:
        if kind not in (None, "mask"):
            raise ApiError(400, f"om=true asks for a mask, but kind is {kind!r}")
        kind = "mask"
    try:
        kind = output_kind(kind, fields["color"], background)  # as `unetbg remove` does
    except KindConflict as exc:
        raise ApiError(400, f"color needs kind color (got kind {exc.kind})") from None
    try:
        threshold = None if fields["threshold"] is None else float(fields["threshold"])
        return output_options(
            kind, fields["color"], background, threshold=threshold, format=fields["format"]
        )
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
