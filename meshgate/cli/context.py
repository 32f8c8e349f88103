"""What every meshgatectl command group shares: where the API is and who we are to it, and how failures end.

The API URL is `--api` (MESHGATE_API), else the current control plane of the config file, else
http://127.0.0.1:5681. The token is `--auth-token` (MESHGATE_AUTH_TOKEN), else the current control plane's
token, sent only when the URL is that control plane's: a token is never sent to an `--api` it was not
configured for. Every failure prints to stderr and exits 1: one line for an unreachable API or a refused
one (401/403), the server's title/detail and each `field: reason` for a rejected request.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import typer

from meshgate.cli.client import ApiClient, ApiClientError, ApiResponseError
from meshgate.cli.config_file import DEFAULT_CONFIG_FILE, ConfigFile, ConfigFileError, load

__all__ = ["DEFAULT_API", "Settings", "api_errors", "fail", "resolve", "settings_of"]

DEFAULT_API = "http://127.0.0.1:5681"


@dataclass(frozen=True, slots=True)
class Settings:
    api: str
    token: str = ""
    config_file: Path = DEFAULT_CONFIG_FILE

    def client(self) -> ApiClient:
        return ApiClient(self.api, token=self.token)


def _same_api(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def resolve(api: str | None, auth_token: str | None, config_file: Path) -> Settings:
    """The settings from the root options and the config file (see the module docstring for precedence)."""
    try:
        config = load(config_file)
    except ConfigFileError as exc:
        if api is None:
            fail(str(exc))
        config = ConfigFile()  # --api given: a broken config file need not stop the command
    current = config.current()
    url = api or (current.url if current else "") or DEFAULT_API
    token = auth_token or (current.token if current is not None and _same_api(current.url, url) else "")
    return Settings(url, token.strip(), config_file)


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
        if exc.status in (401, 403):
            raise typer.Exit(1) from None
        for f in exc.fields:
            typer.echo(f"  * {f.field}: {f.reason}" if f.field else f"  * {f.reason}", err=True)
        raise typer.Exit(1) from None
    except ApiClientError as exc:
        fail(str(exc))
