"""Background swap: a photo's labelled people, cut out and composited onto a new backdrop.

A model trained on a few thousand street and catalogue photos learns what their
*backgrounds* look like, not what a person looks like: the same person on a red or black
wall then loses most of the mask. Swapping the backdrop while keeping the person (and the
label) teaches the difference. Three parts, each usable alone:

- :func:`make_backdrop`: a canvas that is not a photo of this data set's places — a solid
  colour anywhere on the hue circle (black and white included), two-colour gradients and
  vignettes, smooth noise fields and stripe/check textures, or a real photo without people;
- :class:`Framing`: where the person lands — whole and small, half body, or head and
  shoulders larger than the frame (cut by its edges, as in portraits);
- :func:`composite`: paste with a feathered edge (so no hard seam gives the answer away) and
  an optional colour pull of the person towards the backdrop (so a studio-lit person on a
  dark street is not a tell either).

:class:`BackdropSwap` draws all of it from a seeded generator for training (the sample
draw in :class:`unetbg.data.mixed.MixedSamples`, so an epoch replays exactly), and
``scripts/build_studio_val.py`` uses the same functions with fixed values to build the
``studio-val`` robustness set.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from unetbg.data.coco import UnreadableImageError

#: Procedural backdrop kinds (plus ``photo``: a real photo without people).
KINDS = ("solid", "gradient", "vignette", "noise", "texture")


@dataclass(frozen=True)
class Framing:
    """Where the person goes on the canvas, in shares of the canvas.

    ``part`` of the person's box (from its top: 1 the whole person, about 0.3 head and
    shoulders) is scaled to ``height`` of the canvas height, its top at ``top`` and its
    centre at ``centre_x``. Whatever of the person falls outside the canvas is cut off.
    """

    part: float = 1.0
    height: float = 0.8
    top: float = 0.1
    centre_x: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.part <= 1:
            raise ValueError(f"part must be in (0, 1], got {self.part}")
        if not self.height > 0:
            raise ValueError(f"height must be > 0, got {self.height}")


#: The fixed framings of ``studio-val`` (and the three kinds training draws around).
WHOLE = Framing(part=1.0, height=0.86, top=0.07)
HALF_BODY = Framing(part=0.55, height=0.95, top=0.06)
HEAD_AND_SHOULDERS = Framing(part=0.3, height=0.98, top=0.05)
FRAMINGS = {"whole": WHOLE, "half": HALF_BODY, "head": HEAD_AND_SHOULDERS}


def solid(height: int, width: int, rgb: Sequence[int]) -> np.ndarray:
    return np.broadcast_to(np.asarray(rgb, np.uint8), (height, width, 3)).copy()


def gradient(
    height: int, width: int, first: Sequence[int], second: Sequence[int], angle: float
) -> np.ndarray:
    """A linear blend from ``first`` to ``second`` along ``angle`` (radians)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    t = xs / max(width - 1, 1) * math.cos(angle) + ys / max(height - 1, 1) * math.sin(angle)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    return _blend(first, second, t)


def vignette(
    height: int, width: int, centre: Sequence[int], edge: Sequence[int], strength: float
) -> np.ndarray:
    """``centre`` colour in the middle fading to ``edge`` at the corners (studio lighting)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    r = np.hypot((xs - width / 2) / (width / 2), (ys - height / 2) / (height / 2)) / math.sqrt(2)
    return _blend(centre, edge, np.clip(r * strength, 0, 1))


def smooth_noise(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A random colour field: a few random pixels upscaled smoothly (cloth, painted walls)."""
    cells = int(rng.integers(2, 9))
    small = rng.integers(0, 256, (cells, cells, 3)).astype(np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def texture(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Stripes, checks or fine grain in two random colours (fabric, tiles, brick-like)."""
    first, second = random_colour(rng), random_colour(rng)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    period = float(rng.uniform(6, 48))
    angle = float(rng.uniform(0, math.pi))
    along = xs * math.cos(angle) + ys * math.sin(angle)
    kind = int(rng.integers(3))
    if kind == 0:  # stripes
        t = 0.5 + 0.5 * np.sin(2 * math.pi * along / period)
    elif kind == 1:  # checks
        across = -xs * math.sin(angle) + ys * math.cos(angle)
        t = ((np.floor(along / period) + np.floor(across / period)) % 2).astype(np.float32)
    else:  # grain
        t = cv2.GaussianBlur(rng.random((height, width)).astype(np.float32), (0, 0), 1.5)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    return _blend(first, second, t)


def _blend(first: Sequence[int], second: Sequence[int], t: np.ndarray) -> np.ndarray:
    a, b = np.asarray(first, np.float32), np.asarray(second, np.float32)
    return np.clip(a + (b - a) * t[..., None], 0, 255).astype(np.uint8)


def random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """Any hue; saturation and brightness with extra weight at the extremes (pure reds,
    blacks, whites), which are what the photos of the training sets lack."""
    hue = float(rng.random())
    saturation = float(rng.choice([0.0, 1.0, rng.random()], p=[0.15, 0.25, 0.6]))
    value = float(rng.choice([0.0, 1.0, rng.random()], p=[0.1, 0.15, 0.75]))
    r, g, b = colorsys.hsv_to_rgb(hue, saturation, value)
    return round(r * 255), round(g * 255), round(b * 255)


def make_backdrop(kind: str, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``height×width×3`` uint8 backdrop of a procedural ``kind`` (:data:`KINDS`),
    with a little sensor noise so that flat colours are not perfectly flat."""
    if kind == "solid":
        canvas = solid(height, width, random_colour(rng))
    elif kind == "gradient":
        canvas = gradient(
            height, width, random_colour(rng), random_colour(rng), rng.uniform(0, 2 * math.pi)
        )
    elif kind == "vignette":
        canvas = vignette(
            height, width, random_colour(rng), random_colour(rng), rng.uniform(0.6, 1.6)
        )
    elif kind == "noise":
        canvas = smooth_noise(height, width, rng)
    elif kind == "texture":
        canvas = texture(height, width, rng)
    else:
        raise ValueError(f"unknown backdrop kind {kind!r}; kinds: {', '.join(KINDS)}")
    sigma = float(rng.uniform(0, 4))
    if sigma > 0.5:
        noisy = canvas.astype(np.float32) + rng.normal(0, sigma, canvas.shape).astype(np.float32)
        canvas = np.clip(noisy, 0, 255).astype(np.uint8)
    return canvas


def fit_photo(photo: np.ndarray, height: int, width: int) -> np.ndarray:
    """``photo`` scaled to cover ``height×width`` and centre-cropped to it."""
    ph, pw = photo.shape[:2]
    factor = max(height / ph, width / pw)
    size = (max(width, round(pw * factor)), max(height, round(ph * factor)))
    scaled = cv2.resize(
        photo, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    )
    top, left = (scaled.shape[0] - height) // 2, (scaled.shape[1] - width) // 2
    return np.ascontiguousarray(scaled[top : top + height, left : left + width])


def person_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(y0, y1, x0, x1)`` of the mask's person pixels, or ``None`` for an empty mask."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def composite(
    image: np.ndarray,
    mask: np.ndarray,
    backdrop: np.ndarray,
    framing: Framing,
    feather: float = 1.0,
    harmonise: float = 0.0,
    flip: bool = False,
    shade: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The person pixels of ``image``/``mask`` placed on ``backdrop`` by ``framing``.

    Returns the new photo and its mask (uint8 {0, 1}, the backdrop's size). ``feather`` is
    the Gaussian sigma, in canvas pixels, of the paste edge: the photo blends the person into
    the backdrop over about ``2 * feather`` pixels while the label stays the person's own
    (thresholded) outline. ``harmonise`` in [0, 1] moves the person's mean colour that far
    towards the backdrop's. ``shade`` scales the person's colours (below 1: a back-lit or
    shadowed person, darker than the scene). Raises ``ValueError`` for an empty mask.
    """
    box = person_box(mask)
    if box is None:
        raise ValueError("no person to composite: the mask is empty")
    y0, y1, x0, x1 = box
    height, width = backdrop.shape[:2]
    shown = max(1, round((y1 - y0) * framing.part))
    factor = framing.height * height / shown
    crop, crop_mask = image[y0:y1, x0:x1], mask[y0:y1, x0:x1].astype(np.float32)
    if flip:
        crop, crop_mask = crop[:, ::-1], crop_mask[:, ::-1]
    # The transform from crop to canvas pixels: scale, then put the box's top at ``top``
    # and the middle of the part shown at ``centre_x``: the shown rows' person pixels, not
    # the whole box's, so that a lying or reaching person's head stays in a close-up.
    # (factor - 1) / 2: pixel centres, so that crop pixel 0 covers [top, top + factor).
    columns = np.nonzero(crop_mask[:shown].any(axis=0))[0]
    middle = (columns.min() + columns.max() + 1) / 2
    top = framing.top * height + (factor - 1) / 2
    left = framing.centre_x * width - middle * factor + (factor - 1) / 2
    matrix = np.float32([[factor, 0, left], [0, factor, top]])
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    size = (width, height)
    # Resampled premultiplied by the mask, then divided by the resampled mask: the
    # person's rim takes only person colours, none of the old background's.
    weighted = np.ascontiguousarray(crop.astype(np.float32) * crop_mask[..., None])
    person = cv2.warpAffine(weighted, matrix, size, flags=interpolation, borderValue=0)
    coverage = cv2.warpAffine(
        np.ascontiguousarray(crop_mask), matrix, size, flags=interpolation, borderValue=0
    )
    person = person / np.maximum(coverage, 1e-3)[..., None]
    label = (coverage >= 0.5).astype(np.uint8)
    alpha = label.astype(np.float32)
    if feather > 0:
        alpha = cv2.GaussianBlur(alpha, (0, 0), feather)
        # Inside the outline the person stays whole; the blend happens on its rim only.
        alpha = np.maximum(alpha, cv2.erode(label, np.ones((3, 3), np.uint8)).astype(np.float32))
    if harmonise > 0 and label.any():
        inside = label.astype(bool)
        pull = backdrop.reshape(-1, 3).mean(0) - person[inside].mean(0)
        person = person + harmonise * pull
    if shade != 1.0:
        person = person * shade
    out = alpha[..., None] * person + (1 - alpha[..., None]) * backdrop.astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), label


@dataclass(frozen=True)
class SwapSettings:
    """The ranges :class:`BackdropSwap` draws from (the defaults are the training recipe)."""

    #: Longest side of the composited canvas (training crops to far less anyway).
    canvas: int = 320
    #: Shares of whole / half-body / head-and-shoulders framings.
    framing_shares: tuple[float, float, float] = (0.4, 0.3, 0.3)
    #: Shares of solid / gradient / vignette / noise / texture / photo backdrops.
    backdrop_shares: tuple[float, ...] = (0.3, 0.12, 0.1, 0.08, 0.1, 0.3)
    feather: tuple[float, float] = (0.5, 2.0)
    harmonise: tuple[float, float] = (0.0, 0.25)
    #: Probability of 1-3 things that are not people on the backdrop (below).
    distractors: float = 0.6
    #: Probability of each of three hard cases COCO's scenes hold and clean composites
    #: lack: the person cut by any edge of the frame (legs, head or one side missing), the
    #: person darkened as if back-lit, and a thing laid over part of the person (the label
    #: loses what it covers). 0 draws nothing, so older runs replay exactly.
    hard_cases: float = 0.0


def blob(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A random smooth-edged shape filling part of a ``height×width`` box (float32 0..1)."""
    cells = int(rng.integers(3, 7))
    field = cv2.resize(rng.random((cells, cells)).astype(np.float32), (width, height))
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    centre = np.hypot((ys / max(height - 1, 1) - 0.5) * 2, (xs / max(width - 1, 1) - 0.5) * 2)
    shape = (field - 0.6 * centre > 0.1).astype(np.float32)
    return cv2.GaussianBlur(shape, (0, 0), 1.0)


#: A thing to lay on a backdrop: a picture cut to a random blob, or a cut-out (``h×w×3``
#: picture, ``h×w`` float 0..1 outline) such as a COCO object of another class.
Thing = np.ndarray | tuple[np.ndarray, np.ndarray]


def _thing_size(
    height: int, width: int, aspect: float | None, rng: np.random.Generator
) -> tuple[int, int]:
    """A thing's size on a ``height×width`` canvas: 10-50 % of its height, its own
    ``aspect`` (height / width) when it has one, never wider than the canvas."""
    h = max(8, round(height * rng.uniform(0.1, 0.5)))
    w = round(h / aspect) if aspect else round(h * rng.uniform(0.5, 1.6))
    w = max(8, min(width, w))
    return h, w


def _cut(thing: Thing, h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``thing`` resized to ``h×w`` as (float picture, ``h×w`` alpha 0..1). A bare picture
    is cut to a random blob; a cut-out keeps its own outline, softened by a pixel."""
    picture, outline = thing if isinstance(thing, tuple) else (thing, None)
    patch = cv2.resize(picture, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    if outline is None:
        return patch, blob(h, w, rng)
    shape = cv2.resize(outline.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
    return patch, cv2.GaussianBlur(shape, (0, 0), 0.8)


def _lay(out: np.ndarray, patch: np.ndarray, alpha: np.ndarray, top: int, left: int) -> None:
    """Blend ``patch`` into float ``out`` at (``top``, ``left``) by ``alpha``, in place."""
    h, w = alpha.shape
    region = out[top : top + h, left : left + w]
    region[:] = alpha[..., None] * patch + (1 - alpha[..., None]) * region


def _aspect(thing: Thing) -> float | None:
    """A cut-out's own height / width; ``None`` for a bare picture (any blob shape)."""
    return thing[0].shape[0] / thing[0].shape[1] if isinstance(thing, tuple) else None


def add_distractors(
    canvas: np.ndarray, things: Sequence[Thing], rng: np.random.Generator
) -> np.ndarray:
    """``canvas`` with each of ``things`` laid somewhere on it, 10-50 % of the canvas high:
    salient things that are not people. Without them every composite holds exactly one
    thing, the person, and a model learns "whatever stands out is a person" (false people
    on photos of food, animals, cars)."""
    out = canvas.astype(np.float32)
    height, width = canvas.shape[:2]
    for thing in things:
        h, w = _thing_size(height, width, _aspect(thing), rng)
        patch, alpha = _cut(thing, h, w, rng)
        top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        _lay(out, patch, alpha, top, left)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def occlude(
    image: np.ndarray, mask: np.ndarray, thing: Thing, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``thing`` laid over part of the person in ``image``: 20-60 % of the person's height,
    centred somewhere inside the person's box. The label loses the pixels the thing
    covers (alpha >= 0.5), as COCO labels a person behind a table or a bicycle. New arrays;
    the inputs are returned as they are when the mask is empty."""
    box = person_box(mask)
    if box is None:
        return image, mask
    y0, y1, x0, x1 = box
    height, width = image.shape[:2]
    h = max(8, min(height, round((y1 - y0) * rng.uniform(0.2, 0.6))))
    aspect = _aspect(thing)
    w = round(h / aspect) if aspect else round(h * rng.uniform(0.5, 1.6))
    w = max(8, min(width, w))
    cy, cx = rng.uniform(y0, y1), rng.uniform(x0, x1)
    top = int(np.clip(round(cy - h / 2), 0, height - h))
    left = int(np.clip(round(cx - w / 2), 0, width - w))
    patch, alpha = _cut(thing, h, w, rng)
    out = image.astype(np.float32)
    _lay(out, patch, alpha, top, left)
    label = mask.copy()
    label[top : top + h, left : left + w][alpha >= 0.5] = 0
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), label


def cut_by_edge(framing: Framing, rng: np.random.Generator) -> Framing:
    """``framing`` moved so that an edge of the frame cuts the person: the feet (the
    person larger and lower), the head (raised above the top) or one side (moved out to
    the left or right), as in the crowded scenes and snapshots of COCO."""
    side = int(rng.integers(4))
    if side == 0:  # bottom: legs or more out of the frame
        return replace(framing, height=framing.height * rng.uniform(1.2, 2.0))
    if side == 1:  # top: head out of the frame
        return replace(framing, top=-framing.height * rng.uniform(0.1, 0.35))
    shift = rng.uniform(0.0, 0.1)
    return replace(framing, centre_x=-shift if side == 2 else 1 + shift)


class BackdropSwap:
    """With probability ``p``, replace a sample's background by a new backdrop.

    Only samples with a person and no ignore area are swapped (an ignore area is an
    unlabelled crowd that must not travel). ``photos`` are the photos without people to
    use as backdrops, as ``load(i) -> image`` and a count (the training parts of the
    sources: never a validation photo). ``objects``, as ``cut(i) -> (picture, outline)``
    and a count, are cut-outs of things that are not people (COCO's other classes) that
    half of the distractors are drawn from when there are any.
    """

    def __init__(
        self,
        p: float,
        photos: Callable[[int], np.ndarray] | None = None,
        photo_count: int = 0,
        settings: SwapSettings = SwapSettings(),
        objects: Callable[[int], tuple[np.ndarray, np.ndarray]] | None = None,
        object_count: int = 0,
    ) -> None:
        if not 0 <= p <= 1:
            raise ValueError(f"background swap probability must be in [0, 1], got {p}")
        self.p, self.settings = p, settings
        self.photos, self.photo_count = photos, photo_count if photos is not None else 0
        self.objects, self.object_count = objects, object_count if objects is not None else 0

    def _backdrop(self, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
        shares = np.asarray(self.settings.backdrop_shares, np.float64)
        if self.photo_count == 0:
            shares[-1] = 0
        choice = int(rng.choice(len(shares), p=shares / shares.sum()))
        if choice == len(KINDS):
            for _ in range(4):
                try:
                    photo = self.photos(int(rng.integers(self.photo_count)))
                except UnreadableImageError:
                    continue
                return fit_photo(photo, height, width)
            choice = 0
        return make_backdrop(KINDS[choice], height, width, rng)

    def _thing(self, rng: np.random.Generator) -> Thing:
        """A cut-out object (half the time, when there are any), else a crop of a photo
        without people (or, without any, a texture) to lay down."""
        if self.object_count and rng.random() < 0.5:
            try:
                return self.objects(int(rng.integers(self.object_count)))
            except UnreadableImageError:
                pass
        if self.photo_count:
            try:
                photo = self.photos(int(rng.integers(self.photo_count)))
            except UnreadableImageError:
                photo = None
            if photo is not None:
                ph, pw = photo.shape[:2]
                h, w = (
                    max(8, round(ph * rng.uniform(0.2, 0.6))),
                    max(8, round(pw * rng.uniform(0.2, 0.6))),
                )
                top, left = int(rng.integers(0, ph - h + 1)), int(rng.integers(0, pw - w + 1))
                return photo[top : top + h, left : left + w]
        return texture(64, 64, rng)

    def _framing(self, rng: np.random.Generator) -> Framing:
        shares = np.asarray(self.settings.framing_shares, np.float64)
        kind = int(rng.choice(3, p=shares / shares.sum()))
        if kind == 0:  # whole: from small to nearly the frame's height, anywhere
            height = math.exp(rng.uniform(math.log(0.25), math.log(0.95)))
            top = rng.uniform(0.02, max(0.03, 0.98 - height))
            return Framing(1.0, height, top, rng.uniform(0.25, 0.75))
        part = rng.uniform(0.45, 0.75) if kind == 1 else rng.uniform(0.18, 0.4)
        return Framing(part, rng.uniform(0.8, 1.3), rng.uniform(-0.02, 0.15), rng.uniform(0.3, 0.7))

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, ignore: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The sample on a new backdrop (new arrays), or the sample as it was."""
        if rng.random() >= self.p or ignore.any() or not mask.any():
            return image, mask, ignore
        s = self.settings
        aspect = math.exp(rng.uniform(math.log(0.65), math.log(1.5)))  # height / width
        height = s.canvas if aspect >= 1 else round(s.canvas * aspect)
        width = round(s.canvas / aspect) if aspect >= 1 else s.canvas
        backdrop = self._backdrop(height, width, rng)
        if rng.random() < s.distractors:
            count = int(rng.integers(1, 4))
            backdrop = add_distractors(backdrop, [self._thing(rng) for _ in range(count)], rng)
        # Drawn in this order so that a run without hard cases replays as before.
        framing = self._framing(rng)
        feather, harmonise = rng.uniform(*s.feather), rng.uniform(*s.harmonise)
        flip = bool(rng.random() < 0.5)
        cut, shade, cover = (rng.random(3) < s.hard_cases) if s.hard_cases > 0 else (0, 0, 0)
        new_image, new_mask = composite(
            image,
            mask,
            backdrop,
            cut_by_edge(framing, rng) if cut else framing,
            feather=feather,
            harmonise=harmonise,
            flip=flip,
            shade=rng.uniform(0.2, 0.6) if shade else 1.0,
        )
        if cover:
            new_image, new_mask = occlude(new_image, new_mask, self._thing(rng), rng)
        return new_image, new_mask, np.zeros_like(new_mask)
