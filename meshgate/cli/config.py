"""`meshgatectl config control-planes add|list|switch|remove`: kumactl's control plane contexts.

    meshgatectl config control-planes add --name global --address https://cp:5681 \\
        --auth-type tokens --auth-conf token=$(cat data/global/admin-user-token)

`add` checks that the address answers as a meshgate (or Kuma) API (`GET /`, open to everyone) unless
`--skip-check`, then makes the new control plane current. The file (`--config-file`) is written 0600.
`list` never prints tokens.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

import typer

from meshgate.cli.client import ApiClient, ApiClientError
from meshgate.cli.config_file import AUTH_TYPE_TOKENS, ConfigFile, ConfigFileError, ControlPlane, load, save
from meshgate.cli.context import fail, settings_of

__all__ = ["app"]

app = typer.Typer(help="Manage meshgatectl's config file.", no_args_is_help=True)
planes = typer.Typer(help="Control planes meshgatectl talks to.", no_args_is_help=True)
app.add_typer(planes, name="control-planes")


def _auth_conf(items: list[str]) -> dict[str, str]:
    conf: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--auth-conf: expected key=value, got {item.split('=')[0]!r}...")
        conf[key] = value.strip()
    return conf


def _load(ctx: typer.Context) -> ConfigFile:
    try:
        return load(settings_of(ctx).config_file)
    except ConfigFileError as exc:
        fail(str(exc))


def _save(ctx: typer.Context, config: ConfigFile) -> None:
    try:
        save(settings_of(ctx).config_file, config)
    except ConfigFileError as exc:
        fail(str(exc))


@planes.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="Reference name for the control plane.")],
    address: Annotated[str, typer.Option("--address", help="URL of its API, e.g. http://localhost:5681.")],
    auth_type: Annotated[str, typer.Option("--auth-type", help='Authentication type: "tokens".')] = "",
    auth_conf: Annotated[
        list[str] | None, typer.Option("--auth-conf", help="key=value; for tokens: token=USER_TOKEN.")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a control plane of that name.")] = False,
    skip_check: Annotated[bool, typer.Option("--skip-check", help="Do not check that the address answers.")] = False,
) -> None:
    """Add a control plane and make it the current one."""
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        fail(f"--address: API Server URL is invalid: expected http(s)://HOST:PORT, got {address!r}")
    conf = _auth_conf(auth_conf or [])
    if auth_type not in ("", AUTH_TYPE_TOKENS):
        fail(f'--auth-type: authentication plugin of type "{auth_type}" is not found (only "tokens")')
    if auth_type == AUTH_TYPE_TOKENS and not conf.get("token"):
        fail("--auth-conf is not valid: the tokens authentication needs token=USER_TOKEN")
    if not auth_type and conf:
        fail("--auth-conf needs --auth-type tokens")
    cp = ControlPlane(name, address.rstrip("/"), auth_type, conf)
    if not skip_check:
        try:
            with ApiClient(cp.url, timeout=5) as client:
                index = client.get_json("/")
        except ApiClientError as exc:
            fail(f"could not reach the control plane at {cp.url}: {exc} (use --skip-check to add it anyway)")
        if not isinstance(index, dict) or "version" not in index:
            fail(f"{cp.url} does not answer as a meshgate API (use --skip-check to add it anyway)")
    try:
        config = _load(ctx).with_control_plane(cp, overwrite=overwrite)
    except ConfigFileError as exc:
        fail(str(exc))
    _save(ctx, config)
    typer.echo(f'added Control Plane "{name}"')
    typer.echo(f'switched active Control Plane to "{name}"')


@planes.command("list")
def list_planes(ctx: typer.Context) -> None:
    """The control planes in the config file (tokens are never printed)."""
    config = _load(ctx)
    rows = [("ACTIVE", "NAME", "ADDRESS", "AUTH")]
    rows += [
        ("*" if cp.name == config.current_context else "", cp.name, cp.url, cp.auth_type or "-")
        for cp in config.control_planes
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        typer.echo("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@planes.command("switch")
def switch(ctx: typer.Context, name: Annotated[str, typer.Option("--name", help="The control plane.")]) -> None:
    """Make another control plane the current one."""
    try:
        config = _load(ctx).switched(name)
    except ConfigFileError as exc:
        fail(str(exc))
    _save(ctx, config)
    typer.echo(f'switched active Control Plane to "{name}"')


@planes.command("remove")
def remove(ctx: typer.Context, name: Annotated[str, typer.Option("--name", help="The control plane.")]) -> None:
    """Forget a control plane (and its token)."""
    try:
        config = _load(ctx).without(name)
    except ConfigFileError as exc:
        fail(str(exc))
    _save(ctx, config)
    typer.echo(f'removed Control Plane "{name}"')
