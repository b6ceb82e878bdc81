"""Schema migrations: Alembic driven from code, with the scripts shipped in the package.

There is no ``alembic.ini``: :func:`alembic_config` builds the configuration and points
it at ``unetbg/db/migrations``, so an installed wheel can migrate its own database
(``unetbg db upgrade``). A maintainer adds a revision after changing ``models.py`` with::

    from alembic import command
    from unetbg.db.schema import alembic_config
    command.revision(alembic_config("sqlite:////tmp/dev.sqlite3"), "what changed",
                     autogenerate=True)

(on a database already at head), then reviews the generated file in ``versions/``.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from unetbg.db.session import database_is_default_sqlite, get_engine
from unetbg.settings import get_settings, mask_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# URLs whose schema this process has already found at head (ensure_schema runs once each).
_checked: set[str] = set()


class SchemaOutOfDate(RuntimeError):
    """The configured database is not at the revision this version of unetbg needs."""


def alembic_config(url: str) -> Config:
    """An Alembic ``Config`` for ``url`` that uses the packaged migration scripts."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    # ConfigParser interpolates '%'; URL-encoded passwords contain it.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    """The newest revision shipped with this version of unetbg."""
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    if head is None:
        raise RuntimeError(f"no migration scripts found in {MIGRATIONS_DIR}")
    return head


def known_revisions() -> set[str]:
    """Every revision shipped with this version of unetbg."""
    return {rev.revision for rev in ScriptDirectory(str(MIGRATIONS_DIR)).walk_revisions()}


def _resolve(url: str | None) -> str:
    return url or get_settings().database_url


def current(url: str | None = None) -> str | None:
    """The revision the database is at; ``None`` for an empty (never migrated) database.

    A SQLite file that does not exist yet reads as empty and is not created.
    """
    url = _resolve(url)
    parsed = make_url(url)
    if (
        parsed.get_backend_name() == "sqlite"
        and parsed.database not in (None, "", ":memory:")
        and not Path(parsed.database).exists()
    ):
        return None
    with get_engine(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Migrate the database forward to ``revision`` (default: the newest)."""
    url = _resolve(url)
    _checked.discard(url)
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | None, revision: str) -> None:
    """Migrate the database back to ``revision`` (``"base"`` drops every table)."""
    url = _resolve(url)
    _checked.discard(url)
    command.downgrade(alembic_config(url), revision)


def ensure_schema(url: str | None = None) -> None:
    """Make sure the database is at head before it is used.

    The embedded default SQLite file migrates itself (first use creates it). Any other
    database is left alone and :class:`SchemaOutOfDate` says to run ``unetbg db upgrade``:
    a shared PostgreSQL is migrated once, deliberately, not by whichever worker starts first.
    """
    url = _resolve(url)
    if url in _checked:
        return
    head = head_revision()
    at = current(url)
    if at != head:
        if database_is_default_sqlite(url):
            # Several processes may get here at once: the upgrade re-reads the revision
            # under SQLite's write lock (BEGIN IMMEDIATE), so only the first one migrates.
            upgrade(url)
        else:
            raise SchemaOutOfDate(_out_of_date_message(url, at, head))
    _checked.add(url)


def _out_of_date_message(url: str, at: str | None, head: str) -> str:
    where = mask_url(url)
    if at is not None and at not in known_revisions():
        return (
            f"database {where} is at revision {at!r}, which this version of unetbg does not "
            f"know (it needs {head!r}); a newer unetbg has migrated it: upgrade unetbg here"
        )
    state = "is empty" if at is None else f"is at revision {at!r}"
    return (
        f"database {where} {state} but this version of unetbg needs revision {head!r}: "
        f"run `unetbg db upgrade` (with UNETBG_DATABASE_URL set to this database)"
    )
