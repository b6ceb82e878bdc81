"""``unetbg db``: migrate the job database (thin wrappers over :mod:`unetbg.db.schema`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click

URL_OPTION = click.option(
    "--url",
    metavar="URL",
    default=None,
    help="SQLAlchemy database URL (default: UNETBG_DATABASE_URL, else the local SQLite file).",
)


def _resolve(url: str | None) -> str:
    from unetbg.settings import get_settings

    try:
        return url or get_settings().database_url
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


@contextmanager
def _errors(url: str) -> Iterator[None]:
    """Turn database and Alembic failures into one-line errors that never show a password."""
    from alembic.util import CommandError
    from sqlalchemy.exc import ArgumentError, DBAPIError

    from unetbg.settings import mask_url

    where = mask_url(url)
    try:
        yield
    except ArgumentError as exc:
        raise click.ClickException(f"invalid database URL {where}: {exc}") from exc
    except DBAPIError as exc:
        first = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else repr(exc.orig)
        raise click.ClickException(f"database {where}: {first}") from exc
    except CommandError as exc:
        raise click.ClickException(f"{where}: {exc}") from exc


def _describe(revision: str | None) -> str:
    return revision or "empty (no revision)"


@click.group()
def db() -> None:
    """Create and migrate the job database schema.

    A configured database (UNETBG_DATABASE_URL, e.g. PostgreSQL) is migrated once,
    with `unetbg db upgrade`, before workers start; the default local SQLite file
    migrates itself on first use.
    """


def _move(url: str | None, action: Callable[[str], None], verb: str) -> None:
    from unetbg.db import schema
    from unetbg.settings import mask_url

    url = _resolve(url)
    with _errors(url):
        before = schema.current(url)
        action(url)
        after = schema.current(url)
    click.echo(f"{verb} {mask_url(url)}: {_describe(before)} -> {_describe(after)}")


@db.command()
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@URL_OPTION
def upgrade(revision: str, url: str | None) -> None:
    """Migrate the database forward (creates the tables on an empty database)."""
    from unetbg.db import schema

    _move(url, lambda u: schema.upgrade(u, revision), "upgraded")


@db.command()
@click.argument("revision")
@URL_OPTION
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def downgrade(revision: str, url: str | None, yes: bool) -> None:
    """Migrate the database back to REVISION ("base" drops every table and its rows)."""
    from unetbg.db import schema
    from unetbg.settings import mask_url

    if not yes:
        click.confirm(
            f"Downgrade {mask_url(_resolve(url))} to {revision}? Dropped columns and tables "
            "lose their data",
            abort=True,
        )
    _move(url, lambda u: schema.downgrade(u, revision), "downgraded")


@db.command()
@URL_OPTION
def current(url: str | None) -> None:
    """Show the database's revision and whether it is up to date."""
    from unetbg.db import schema
    from unetbg.settings import mask_url

    url = _resolve(url)
    with _errors(url):
        at = schema.current(url)
    head = schema.head_revision()
    state = "up to date" if at == head else f"behind: run `unetbg db upgrade` to reach {head}"
    if at is not None and at != head and at not in schema.known_revisions():
        state = f"unknown to this unetbg (its newest is {head}): upgrade unetbg"
    click.echo(f"{mask_url(url)}: {_describe(at)} ({state})")
