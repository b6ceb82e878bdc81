"""Pieces both views share: the schema check and the process-wide models."""

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
    """A loaded checkpoint, the key it is cached under, and the lock that serialises
    the use of the models across sessions.

    One forward pass already uses every CPU core; two sessions running at once would
    only fight over them (and over GPU memory), so they take turns.
    """

    inference: object
    device: str
    lock: threading.Lock
    key: tuple


#: Models of this process, shared by every session (two at most):
#: :class:`unetbg.inference.ModelCache`, made on first use (importing the page imports
#: no torch), so a checkpoint rewritten in place is loaded afresh, as everywhere else.
_MODELS: list = []
_RUN_LOCK = threading.Lock()


def load_model(path: Path, device: str) -> LoadedModel:
    """Load (or reuse) the model for the checkpoint file ``path`` on ``device``."""
    from unetbg.inference import ModelCache
    from unetbg.removal import RunOptions

    with _RUN_LOCK:
        if not _MODELS:
            _MODELS.append(ModelCache(2))
        cache, run = _MODELS[0], RunOptions(device=device, batch_size=8)
        key = cache.key(path, run)
        with st.spinner("Loading the model…"):
            inference = cache.get(path, run)
    return LoadedModel(inference, str(inference.device), _RUN_LOCK, key)
