"""``unetbg config``: print the effective settings with secrets masked."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def config(as_json: bool) -> None:
    """Print the effective settings (UNETBG_* variables and defaults), passwords masked."""
    from unetbg.settings import get_settings

    try:
        settings = get_settings()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(settings.public(), indent=2, sort_keys=True))
        return
    values = settings.masked()
    # Names are the Settings fields; each is read from UNETBG_<NAME> (``embedded`` is derived).
    width = max(len(key) for key in values)
    for key in sorted(values):
        click.echo(f"{key.ljust(width)}  {values[key] or '(unset)'}")
