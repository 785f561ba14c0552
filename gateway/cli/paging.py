"""`--limit` and `--cursor` of the list commands: the admin API's pages, on the command line."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from gateway.pages import DEFAULT_LIMIT, MAX_LIMIT, InvalidCursor, Page, decode_cursor

F = TypeVar("F", bound=Callable[..., Any])


def page_options(kind: str) -> Callable[[F], F]:
    """`--limit N` and `--cursor C` for the list of `kind`; the command receives `limit` and
    `after` (the public id the cursor names, or None)."""

    def after_of(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return decode_cursor(kind, value)
        except InvalidCursor:
            raise click.BadParameter(f"not a cursor of the {kind} list") from None

    def decorate(command: F) -> F:
        command = click.option(
            "--cursor",
            "after",
            callback=after_of,
            help="Start after the page that printed this cursor.",
        )(command)
        return click.option(
            "--limit",
            default=DEFAULT_LIMIT,
            show_default=True,
            type=click.IntRange(1, MAX_LIMIT),
            help="At most this many items.",
        )(command)

    return decorate


def echo_next_cursor(page: Page[Any], command: str) -> None:
    """Say on stderr how to get the next page, when one follows (stdout keeps the list)."""
    if page.next_cursor is not None:
        click.echo(f"more follow: predgate {command} --cursor {page.next_cursor}", err=True)
