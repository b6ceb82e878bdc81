"""``unetbg config``: print the effective settings (secrets masked); ``config set`` /
``unset`` write the config file ``<data dir>/config.toml`` that every command reads."""

from __future__ import annotations

import json
import os

import click

HELP = """Print the effective settings (passwords masked): UNETBG_* variables over the
config file <data dir>/config.toml over the defaults.

\b
`unetbg config set KEY VALUE` writes a setting into the file, so it need not be
exported in every shell (`unetbg config set broker_url redis://127.0.0.1:6379/0`);
`unetbg config unset KEY` removes it. KEY is a name listed here; a variable
UNETBG_<KEY> still wins over the file. The data dir itself is UNETBG_DATA_DIR only.
"""


@click.group(invoke_without_command=True, help=HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def config(ctx: click.Context, as_json: bool) -> None:
    if ctx.invoked_subcommand is not None:
        return
    settings = _settings()
    if as_json:
        click.echo(json.dumps(settings.public(), indent=2, sort_keys=True))
        return
    values = settings.masked()
    # Names are the Settings fields; each is read from UNETBG_<NAME> (``embedded`` is derived).
    width = max(len(key) for key in values)
    for key in sorted(values):
        click.echo(f"{key.ljust(width)}  {values[key] or '(unset)'}")


@config.command("set")
@click.argument("key")
@click.argument("value")
def set_(key: str, value: str) -> None:
    """Write KEY = VALUE into the config file (checked first: a bad value is refused
    and the file left as it was)."""
    _change(key, value)


@config.command()
@click.argument("key")
def unset(key: str) -> None:
    """Remove KEY from the config file (its default, or its variable, applies again)."""
    _change(key, None)


def _settings():
    from unetbg.settings import get_settings

    try:
        return get_settings()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


def _change(key: str, value: str | None) -> None:
    """Check the file with ``key`` changed as every command would read it, then write it."""
    from unetbg.settings import (
        ENV_PREFIX,
        FILE_FIELDS,
        get_settings,
        read_config_file,
        resolve_data_dir,
        write_config_file,
    )

    key = key.lower().removeprefix(ENV_PREFIX.lower())
    if key not in FILE_FIELDS:
        why = " (the file lives in it: set UNETBG_DATA_DIR)" if key == "data_dir" else ""
        raise click.UsageError(
            f"no setting {key!r}{why}; the file may set {', '.join(FILE_FIELDS)}"
        )
    data_dir = resolve_data_dir()  # not the file's settings: a broken file can be fixed
    try:
        values = read_config_file(data_dir)
    except ValueError as exc:
        raise click.ClickException(f"{exc} (edit or remove the file)") from None
    if value is None:
        values.pop(key, None)
    else:
        values[key] = value
        # The new value alone, as a command reads it: an integer that is not one fails now.
        env = {ENV_PREFIX + k.upper(): v for k, v in values.items()}
        try:
            get_settings({"UNETBG_DATA_DIR": str(data_dir)} | env)
        except ValueError as exc:  # worded for the file: the key, not its variable
            raise click.UsageError(str(exc).replace(ENV_PREFIX + key.upper(), key)) from None
    path = write_config_file(data_dir, values)
    shown = "" if value is None else " = " + _masked(key, value)
    click.echo(f"{'unset' if value is None else 'set'} {key}{shown} in {path}")
    variable = ENV_PREFIX + key.upper()
    if os.environ.get(variable):
        click.echo(f"note: {variable} is set in this shell and wins over the file", err=True)


def _masked(key: str, value: str) -> str:
    from unetbg.settings import mask_url

    return "***" if key in ("api_key", "flower_basic_auth") else mask_url(value)
