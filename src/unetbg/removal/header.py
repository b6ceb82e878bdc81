"""Checks of a request that other machines will run, made without torch (issue 23: the
submitting process held 1.1-1.4 GB because checking the checkpoint imported the model
stack): the device name's form, and the checkpoint file's header.

The header check reads the archive ``torch.save`` writes (a zip with one ``data.pkl``)
and walks the pickle's opcodes with :mod:`pickletools`, executing nothing: a file that is
not such an archive, whose pickle is broken, that names objects a ``weights_only`` load
refuses, or that lacks a unetbg checkpoint's keys or format is refused before anything
is recorded (issue 20). What only loading the tensors shows (a truncated tensor file)
fails on the worker that loads it, naming the file's fault, for every image.
"""

from __future__ import annotations

import pickletools
import re
import zipfile
from pathlib import Path

from unetbg.removal.checks import Refused

#: ``unetbg.model.checkpoint``'s ``FORMAT_VERSION`` and required keys (a test checks they
#: agree; importing them would import torch).
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "model_config", "preprocessing", "state_dict")
#: What a checkpoint's pickle may name: torch's (tensors, storages, their rebuilders)
#: and the plain containers ``torch.load(..., weights_only=True)`` also allows.
TORCH_MODULE = re.compile(r"^torch(\..*)?$")
SAFE_GLOBALS = {("collections", "OrderedDict"), ("_codecs", "encode")} | {
    # Protocol 2 (torch.save's) names the builtins module ``__builtin__``.
    (module, name)
    for module in ("builtins", "__builtin__")
    for name in ("set", "frozenset", "bytearray")
}
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_STRINGS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"}


def check_device_name(device: str) -> str:
    """``device`` if its form is one a worker can use (``auto``, ``cpu``, ``cuda``,
    ``cuda:N``); the workers' hardware decides the rest."""
    if not _DEVICE.match(device.strip().lower()):
        raise Refused(f"invalid device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return device


def check_checkpoint_header(path: str) -> str:
    """``path`` if its header is a unetbg checkpoint's (module doc); else :class:`Refused`."""
    file = Path(path)
    if not file.is_file():
        raise Refused(f"refusing checkpoint {file}: checkpoint file not found")
    try:
        with zipfile.ZipFile(file) as archive:
            pickles = [n for n in archive.namelist() if n.rsplit("/", 1)[-1] == "data.pkl"]
            if len(pickles) != 1:
                raise Refused(f"refusing checkpoint {file}: not a torch.save file (no data.pkl)")
            data = archive.read(pickles[0])
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise Refused(
            f"refusing checkpoint {file}: not a readable checkpoint (not a torch.save "
            f"archive: {exc})"
        ) from None
    _check_pickle(file, data)
    return path


def _check_pickle(file: Path, data: bytes) -> None:
    try:
        ops = list(pickletools.genops(data))
    except (ValueError, IndexError) as exc:  # a broken or truncated pickle
        raise Refused(f"refusing checkpoint {file}: not a readable checkpoint ({exc})") from None
    strings: list[str] = []
    version = None
    for opcode, arg, _ in ops:
        if opcode.name in _STRINGS:
            strings.append(arg)
        elif opcode.name in ("GLOBAL", "STACK_GLOBAL"):
            module, name = arg.split(" ", 1) if opcode.name == "GLOBAL" else strings[-2:]
            if not (TORCH_MODULE.match(module) or (module, name) in SAFE_GLOBALS):
                raise Refused(
                    f"refusing checkpoint {file}: not a unetbg checkpoint or contains "
                    f"unsafe pickled objects (it names {module}.{name}, which a "
                    "weights_only load refuses)"
                )
        elif opcode.name.startswith("BININT") and strings[-1:] == ["format_version"]:
            version = version if version is not None else arg
    missing = [key for key in REQUIRED_KEYS if key not in strings]
    if missing:
        raise Refused(f"refusing checkpoint {file}: not a unetbg checkpoint (no {missing[0]})")
    if version != FORMAT_VERSION:
        raise Refused(
            f"refusing checkpoint {file}: unsupported checkpoint format_version {version!r}; "
            f"this version of unetbg reads format_version {FORMAT_VERSION}"
        )
