"""``should_stop`` callbacks for cancelling a run at an exact point."""

from __future__ import annotations


class StopAfter:
    """``should_stop`` that says yes from its ``n``-th question on (steps and val batches)."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.calls >= self.n
