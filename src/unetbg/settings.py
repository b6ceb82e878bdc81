"""Process-wide settings: ``UNETBG_*`` environment variables over the config file
``<data dir>/config.toml`` (``unetbg config set``) over the defaults.

This is the one place that defines each deployment default. It imports nothing
from the rest of the package (and no torch), so every layer may use it. The file lets a
user set the broker, the database or the API key once instead of in every shell; a
variable still wins, so one command (or a service's environment) can differ. The data
dir itself is where the file lives, so it is set by ``UNETBG_DATA_DIR`` only.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from platformdirs import user_data_dir

ENV_PREFIX = "UNETBG_"
#: The config file's name inside the data dir.
CONFIG_FILE = "config.toml"
#: Default checkpoint for ``unetbg remove`` and the web page (``unetbg web --checkpoint``).
CHECKPOINT_ENV = "UNETBG_CHECKPOINT"


def _default_data_dir() -> Path:
    return Path(user_data_dir("unetbg", appauthor=False))


@dataclass(frozen=True)
class Settings:
    """Effective configuration. Build it with :func:`get_settings`."""

    data_dir: Path
    #: Celery broker; ``None`` means the embedded default (tasks run in-process).
    broker_url: str | None
    #: SQLAlchemy URL; defaults to a SQLite file inside ``data_dir``.
    database_url: str
    #: Seconds Redis waits before redelivering an unacknowledged task. A training task can
    #: outlive it: tasks keep a DB heartbeat and defer duplicate deliveries (docs/jobs.md).
    visibility_timeout: int = 6 * 3600
    #: Images per remove-dir chunk task.
    chunk_size: int = 16
    #: Decompression-bomb guard: images with more pixels are refused.
    max_image_pixels: int = 89_478_485
    #: Web page upload limit in megabytes.
    max_upload_mb: int = 25
    #: ``user:password`` for Flower's basic auth.
    flower_basic_auth: str | None = None
    #: Where the web page links for live worker monitoring.
    flower_url: str | None = None
    #: A running job whose heartbeat is older than this is reported as lost.
    heartbeat_timeout: int = 300
    #: The model used when no checkpoint is given or registered: ``None`` is the one shipped
    #: in the package (``unetbg.weights``), ``none`` turns it off, anything else is a path.
    default_model: str | None = None
    #: The HTTP API's key (``unetbg serve``), sent as ``Authorization: Bearer KEY``.
    api_key: str | None = None
    #: Folders the HTTP API's jobs may read and write, joined by ``os.pathsep`` (``:``).
    api_roots: str | None = None

    @property
    def embedded(self) -> bool:
        """True when no broker is configured and jobs run in this process."""
        return not self.broker_url

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    def public(self) -> dict[str, Any]:
        """Settings as JSON values (ints, ``None`` when unset, ``embedded`` a bool, paths as
        strings) with passwords in URLs and auth replaced by ``***``."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if isinstance(value, Path):
                value = str(value)
            if isinstance(value, str):
                if key == "api_key":
                    value = "***"
                elif key == "flower_basic_auth":
                    # Flower accepts several comma-separated ``user:password`` pairs.
                    value = ",".join(pair.split(":", 1)[0] + ":***" for pair in value.split(","))
                value = mask_url(value)
            out[key] = value
        out["embedded"] = self.embedded
        return out

    def masked(self) -> dict[str, str]:
        """:meth:`public` as text: ``""`` for unset values."""
        return {key: "" if v is None else str(v) for key, v in self.public().items()}


def mask_url(url: str) -> str:
    """Hide the password part of ``scheme://user:password@host`` URLs."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


_INT_FIELDS = {f.name for f in fields(Settings) if f.type in ("int", int)}
#: What the config file may set: every field but the data dir (the file lives there).
FILE_FIELDS = tuple(f.name for f in fields(Settings) if f.name != "data_dir")


def config_path(data_dir: Path) -> Path:
    return data_dir / CONFIG_FILE


def read_config_file(data_dir: Path) -> dict[str, str]:
    """The settings in ``<data_dir>/config.toml`` as text (as variables give them);
    empty when there is no file. A file that is not TOML, or names something that is
    not a setting, is a :class:`ValueError` naming the file."""
    path = config_path(data_dir)
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read the config file {path}: {exc}") from None
    unknown = sorted(set(table) - set(FILE_FIELDS))
    if unknown:
        raise ValueError(
            f"{path}: unknown setting(s) {', '.join(unknown)}; "
            f"the file may set {', '.join(FILE_FIELDS)}"
        )
    bad = sorted(k for k, v in table.items() if isinstance(v, bool) or not isinstance(v, str | int))
    if bad:
        raise ValueError(f"{path}: {', '.join(bad)} must be a string or an integer")
    return {key: str(value) for key, value in table.items()}


def write_config_file(data_dir: Path, values: dict[str, str]) -> Path:
    """Write ``values`` (setting -> text) as ``<data_dir>/config.toml``, mode 0600 (it
    may hold the API key or passwords in URLs), atomically; integers as integers."""
    lines = ["# unetbg settings (`unetbg config set KEY VALUE`); UNETBG_<KEY> variables win.\n"]
    for key in sorted(values):
        value = values[key]
        # A JSON string is a valid TOML basic string (same escapes).
        lines.append(f"{key} = {value if key in _INT_FIELDS else json.dumps(value)}\n")
    path = config_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{CONFIG_FILE}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.writelines(lines)
    os.replace(tmp, path)
    return path


def resolve_data_dir(env: dict[str, str] | None = None) -> Path:
    """``UNETBG_DATA_DIR`` (``~`` expanded), or the platform's user data folder."""
    env = os.environ if env is None else env
    return Path(env.get(ENV_PREFIX + "DATA_DIR") or _default_data_dir()).expanduser()


def get_settings(env: dict[str, str] | None = None) -> Settings:
    """Read settings from ``env`` (default: ``os.environ``) over the data dir's config
    file (:func:`read_config_file`) over the defaults."""
    env = os.environ if env is None else env

    def from_env(name: str) -> str | None:
        value = env.get(ENV_PREFIX + name.upper())
        return value if value not in (None, "") else None

    data_dir = resolve_data_dir(env)
    in_file = read_config_file(data_dir)

    def get(name: str) -> str | None:
        value = from_env(name)
        return value if value is not None else in_file.get(name) or None

    def origin(name: str) -> str:
        if from_env(name) is not None:
            return f"{ENV_PREFIX}{name.upper()}"
        return f"{name} in {config_path(data_dir)}"

    values: dict = {
        "data_dir": data_dir,
        "broker_url": get("broker_url"),
        "database_url": get("database_url") or f"sqlite:///{data_dir / 'unetbg.sqlite3'}",
    }
    for name in ("flower_basic_auth", "flower_url", "default_model", "api_key", "api_roots"):
        values[name] = get(name)
    for name in _INT_FIELDS:
        raw = get(name)
        if raw is not None:
            try:
                values[name] = int(raw)
            except ValueError as exc:
                raise ValueError(f"{origin(name)} must be an integer, got {raw!r}") from exc
            # Every integer setting is a size, count or duration: zero or less is a mistake.
            if values[name] <= 0:
                raise ValueError(f"{origin(name)} must be positive, got {raw!r}")
    return Settings(**values)
