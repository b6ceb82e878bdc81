"""The torch ``Dataset`` over :class:`~unetbg.data.coco.CocoPersons`."""

from __future__ import annotations

from collections.abc import Callable

from torch.utils.data import Dataset

from unetbg.data.coco import CocoPersons, UnreadableImageError


class CocoPersonDataset(Dataset):
    """Samples ``{"image", "mask", "ignore", "raw", "image_id"}`` for training/evaluation.

    ``transform`` is a preset (:class:`~unetbg.data.presets.TrainPreset` or
    :class:`~unetbg.data.presets.EvalPreset`) called as ``transform(image, mask, ignore)``.

    An image that cannot be decoded (truncated, corrupt, wrong size) is recorded in
    ``unreadable`` (``{image_id: reason}``) and replaced by the next readable image, so an
    epoch never crashes on one bad file; ``RuntimeError`` only when none is readable.
    With DataLoader workers each worker keeps its own ``unreadable`` record.
    """

    def __init__(self, persons: CocoPersons, transform: Callable[..., dict]) -> None:
        if len(persons) == 0:
            raise ValueError(
                f"no images to load from {persons.image_dir} "
                f"({len(persons.missing)} listed images are missing on disk)"
            )
        self.persons = persons
        self.transform = transform
        self.unreadable: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.persons)

    def __getitem__(self, index: int) -> dict:
        n = len(self.persons)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} images")
        for step in range(n):
            image_id = self.persons.image_ids[(index + step) % n]
            if image_id in self.unreadable:
                continue
            try:
                image = self.persons.read_image(image_id)
            except UnreadableImageError as exc:
                self.unreadable[image_id] = str(exc)
                continue
            mask, ignore = self.persons.masks(image_id)
            sample = self.transform(image, mask, ignore)
            sample["image_id"] = int(image_id)
            return sample
        raise RuntimeError(f"none of the {n} images in {self.persons.image_dir} could be decoded")
