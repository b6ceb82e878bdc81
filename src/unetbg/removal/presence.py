"""Whether an output shows a person: the one definition of "no person found".

A folder of 10,000 photos hides the few where the model found nobody (a miss, or a
photo without people); each item records :func:`person_share` so they can be listed.
"""

from __future__ import annotations

import numpy as np

#: Share of the photo below which an output counts as "no person found". 0.1 % is a
#: 32×32 patch of a 1-megapixel photo: smaller than any person worth cutting out (a
#: face in a crowd is bigger), yet above the specks of stray probability a model
#: leaves on an empty scene; an empty mask is 0.
NO_PERSON_SHARE = 0.001

#: The probability at which a pixel counts as person: where the output's alpha is
#: half or more, i.e. what a viewer sees as kept.
PERSON_PROBABILITY = 0.5


def person_share(probability: np.ndarray) -> float:
    """Share (0-1) of the pixels whose final probability is >= 0.5."""
    if probability.size == 0:
        return 0.0
    return float(np.count_nonzero(probability >= PERSON_PROBABILITY) / probability.size)


def no_person(share: float | None) -> bool:
    """``True`` when an output with ``share`` counts as "no person found" (``None``,
    not measured, is not flagged)."""
    return share is not None and share < NO_PERSON_SHARE
