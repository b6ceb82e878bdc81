"""Alembic environment for unetbg, run by :mod:`unetbg.db.schema` (there is no alembic.ini).

The target is ``Base.metadata``, whose naming convention gives every constraint a
deterministic name. Migrations are always rendered in batch mode: SQLite can only
change a table by copying it, and batch operations still emit plain ``ALTER`` on
PostgreSQL, so one script serves both databases.
"""

from __future__ import annotations

from alembic import context

from unetbg.db import models  # noqa: F401  (registers every table on Base.metadata)
from unetbg.db.base import Base
from unetbg.db.session import get_engine

config = context.config

#: Arbitrary constant naming unetbg's migration lock among a server's advisory locks.
_PG_MIGRATION_LOCK = 0x756E6574  # "unet"


def _run(connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,
        compare_type=True,
        # Our SQLite connections issue BEGIN themselves (unetbg.db.session), which makes
        # SQLite DDL transactional: a failed upgrade leaves the previous schema intact.
        transactional_ddl=True if sqlite else None,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Concurrent upgrades queue here; Alembic reads the current revision only
            # inside run_migrations, so each one after the first finds nothing to do.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
        context.run_migrations()
        if sqlite:
            # Batch mode copies tables with foreign keys switched off; check nothing broke.
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"migration left rows with broken foreign keys: {broken[:5]}")


def run_migrations_online() -> None:
    """Migrate the database named by the ``sqlalchemy.url`` option."""
    engine = get_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        if connection.dialect.name != "sqlite":
            _run(connection)
            return
        # SQLite ignores this pragma inside a transaction, so it is set on the raw
        # connection before Alembic begins one. With foreign keys on, the DROP TABLE of a
        # batch copy would cascade-delete the rows of every referencing table.
        raw = connection.connection.driver_connection
        raw.execute("PRAGMA foreign_keys=OFF")
        try:
            _run(connection)
        finally:
            raw.execute("PRAGMA foreign_keys=ON")


if context.is_offline_mode():
    raise RuntimeError("unetbg migrations run online only (no --sql mode)")
run_migrations_online()
