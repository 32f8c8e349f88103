"""What every meshgatectl command group shares: the API URL from the root `--api` option, and how failures end.

Every failure prints to stderr and exits 1: one line for an unreachable API, the server's title/detail and
each `field: reason` for a rejected request.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NoReturn

import typer

from meshgate.cli.client import ApiClientError, ApiResponseError

__all__ = ["DEFAULT_API", "Settings", "api_errors", "fail", "settings_of"]

DEFAULT_API = "http://127.0.0.1:5681"


@dataclass(frozen=True, slots=True)
class Settings:
    api: str


def fail(message: str) -> NoReturn:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(1)


def settings_of(ctx: typer.Context) -> Settings:
    settings = ctx.find_object(Settings)
    return settings if settings is not None else Settings(DEFAULT_API)


@contextmanager
def api_errors(subject: str) -> Iterator[None]:
    """Ends the command with exit 1 and a readable message for any failed API call inside the block."""
    try:
        yield
    except ApiResponseError as exc:
        typer.echo(f"Error: {subject}: {exc}", err=True)
        for f in exc.fields:
            typer.echo(f"  * {f.field}: {f.reason}" if f.field else f"  * {f.reason}", err=True)
        raise typer.Exit(1) from None
    except ApiClientError as exc:
        fail(str(exc))
