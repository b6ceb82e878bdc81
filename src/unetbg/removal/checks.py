"""The checks made before a request is recorded or run, shared by the CLI and the HTTP
API: the device (a malformed name; one this machine lacks, where the model would run
here), the backend (a named one must be installed where the model runs here; ``auto``
never is refused: it falls back) and the checkpoint file (it must load safely). Each refusal is a :class:`Refused`,
which every front door reports its own way (exit status 2, HTTP 400) before anything is
recorded or loaded. torch is imported only when a check runs."""

from __future__ import annotations

import importlib.util


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


def check_backend(backend: str, runs_here: bool, note: str = "") -> str:
    """``backend`` if it can run: a named one whose package is not installed is refused
    when the model runs ``here`` (the reason followed by ``note``). ``auto`` and
    ``torch`` always can: ``auto`` passes over what is missing, and says so."""
    # The optional backends are named after their packages (unetbg.backends.BACKENDS),
    # looked up without importing torch.
    if runs_here and backend not in ("auto", "torch") and importlib.util.find_spec(backend) is None:
        raise Refused(
            f"backend {backend!r} needs the {backend} package: "
            f"pip install 'unetbg[{backend}]'{note}"
        )
    return backend


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
