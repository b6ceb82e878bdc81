"""Which COCO person annotations count as a person mask (no torch, no pycocotools).

The rules are small pure functions over annotation dicts so that each one can be
tested alone and the README can quote them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

PERSON_CATEGORY_ID = 1
CROWD_MODES = ("ignore", "background", "skip")
CrowdMode = Literal["ignore", "background", "skip"]


@dataclass(frozen=True)
class PersonFilter:
    """The rules that decide which person annotations make the training mask.

    An annotation of category 1 (person) is *valid* when all of these hold:

    - ``iscrowd`` is 0 (crowd regions are handled by ``crowd``, never "valid");
    - its ``area`` (COCO's segmentation area in pixels) is at least ``min_area``;
    - with ``require_keypoints=True``, its ``num_keypoints`` is above 0 (needs the
      ``person_keypoints_*`` annotation file, which is the one that carries keypoints).

    What happens to the pixels of the other person annotations:

    - a non-crowd person rejected by ``min_area`` or ``require_keypoints`` becomes *ignore*
      pixels: it is still a person, and calling it background would teach the model to
      erase people;
    - a crowd region (``iscrowd=1``), by ``crowd``:
      ``"ignore"`` (default) its pixels become ignore pixels (except where a valid person
      covers them, which stay foreground); ``"background"`` its pixels count as
      background; ``"skip"`` every image that has a crowd region is left out.

    Annotations of other categories are never used.
    """

    min_area: float = 0.0
    crowd: CrowdMode = "ignore"
    require_keypoints: bool = False

    def __post_init__(self) -> None:
        if self.crowd not in CROWD_MODES:
            raise ValueError(f"crowd must be one of {', '.join(CROWD_MODES)}; got {self.crowd!r}")
        if not self.min_area >= 0:  # also rejects NaN
            raise ValueError(f"min_area must be >= 0; got {self.min_area!r}")

    def is_person(self, ann: dict[str, Any]) -> bool:
        """True for any annotation of the person category, crowd or not."""
        return ann.get("category_id") == PERSON_CATEGORY_ID

    def is_crowd(self, ann: dict[str, Any]) -> bool:
        """True for a person crowd region."""
        return self.is_person(ann) and bool(ann.get("iscrowd", 0))

    def is_valid(self, ann: dict[str, Any]) -> bool:
        """True when the annotation is a person that goes into the foreground mask."""
        if not self.is_person(ann) or ann.get("iscrowd", 0):
            return False
        if float(ann.get("area", 0.0)) < self.min_area:
            return False
        return not (self.require_keypoints and int(ann.get("num_keypoints", 0)) <= 0)

    def is_ignored(self, ann: dict[str, Any]) -> bool:
        """True when the annotation's pixels become ignore pixels (see the class doc)."""
        if not self.is_person(ann) or self.is_valid(ann):
            return False
        if self.is_crowd(ann):
            return self.crowd == "ignore"
        return True

    def to_dict(self) -> dict[str, Any]:
        """The filter as a plain dict (for JSON reports)."""
        return asdict(self)
