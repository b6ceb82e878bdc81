"""The checks made before a request is recorded or run, shared by the CLI and the HTTP
API: the device (a malformed name; one this machine lacks, where the model would run
here) and the checkpoint file (it must load safely). Each refusal is a :class:`Refused`,
which every front door reports its own way (exit status 2, HTTP 400) before anything is
recorded or loaded. torch is imported only when a check runs."""

from __future__ import annotations


class Refused(ValueError):
    """A request that cannot work; refused before anything is recorded."""


def check_device(device: str, runs_here: bool, note: str = "") -> str:
    """``device`` if it can work. A malformed name is refused always; a device this
    machine lacks (``cuda`` without a GPU) only when the model runs ``here``, the reason
    followed by ``note``. Elsewhere (workers) their hardware decides, and a worker that
    cannot use it fails the job once, saying so."""
    from unetbg.model import resolve_device

    try:
        resolve_device(device)
    except ValueError as exc:
        raise Refused(str(exc)) from None
    except RuntimeError as exc:
        if runs_here:
            raise Refused(f"{exc}{note}") from None
    return device


def check_checkpoint(path: str) -> str:
    """``path``, once it has loaded here (``weights_only=True``: nothing in the file is
    executed), so that an unsafe or corrupt file is refused now with the loader's reason
    instead of failing every chunk on the workers."""
    from unetbg.model import CheckpointError, load_checkpoint

    try:
        load_checkpoint(path)
    except CheckpointError as exc:
        raise Refused(f"refusing checkpoint {exc}") from None
    return path
