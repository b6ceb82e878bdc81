"""Pieces both views share: the schema check and the process-wide model cache."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import streamlit as st


def schema_ready() -> bool:
    """Check the database schema; show why on the page and return False if unusable."""
    from sqlalchemy.exc import SQLAlchemyError

    from unetbg.db.schema import SchemaOutOfDate, ensure_schema

    try:
        ensure_schema()
    except SchemaOutOfDate as exc:
        st.error(str(exc))
        return False
    except SQLAlchemyError as exc:
        st.error(f"Cannot reach the job database: {exc.__class__.__name__}: {exc.args[0]}")
        return False
    return True


@dataclass
class LoadedModel:
    """A loaded checkpoint plus the lock that serialises its use across sessions.

    One forward pass already uses every CPU core; two sessions running at once would
    only fight over them (and over GPU memory), so they take turns.
    """

    inference: object
    device: str
    lock: threading.Lock


@st.cache_resource(max_entries=2, show_spinner="Loading the model…")
def load_model_cached(path: str, mtime_ns: int, device: str) -> LoadedModel:
    """The model for ``path`` on ``device``, loaded once per process.

    ``mtime_ns`` is only part of the cache key: a checkpoint overwritten in place
    (training saves ``model_best.pth`` again) is loaded afresh.
    """
    from unetbg.inference import ModelInference

    inference = ModelInference(path, device=device)
    return LoadedModel(inference=inference, device=str(inference.device), lock=threading.Lock())


def load_model(path: Path, device: str) -> LoadedModel:
    """Load (or reuse) the model for the checkpoint file ``path`` on ``device``."""
    resolved = path.expanduser().resolve()
    return load_model_cached(str(resolved), resolved.stat().st_mtime_ns, device)
