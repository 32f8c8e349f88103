"""`meshgatectl generate zone-token`, `dataplane-token` and `user-token`: tokens the control plane signs, printed.

As kumactl's `generate zone-token`, the global signs it (`POST /tokens/zone` on `--api`, which must be the
global's API) and the command prints it, so it can go straight to a file for the zone's `--cp-token-path`.
`generate user-token` (kumactl's flags) asks the control plane at `--api` for a token for its own API
(`POST /tokens/user`): a global's user tokens are not valid on a zone, and the other way round.
"""

from __future__ import annotations

from typing import Annotated

import typer

from meshgate.cli.context import api_errors, settings_of

__all__ = ["app"]

app = typer.Typer(help="Generate tokens for zones, data planes and users.", no_args_is_help=True)


@app.command("zone-token")
def zone_token(
    ctx: typer.Context,
    zone: Annotated[str, typer.Option("--zone", help="Name of the zone the token is for.")],
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help="What the token allows; repeat for several (cp, ingress, egress). Default: cp."),
    ] = None,
    valid_for: Annotated[
        str | None,
        typer.Option("--valid-for", help="How long the token is valid, e.g. 720h or 30d. Default: 10 years."),
    ] = None,
) -> None:
    """Print a zone token signed by the global (store it in the file the zone's --cp-token-path names)."""
    doc: dict[str, object] = {"zone": zone}
    if scope:
        doc["scope"] = list(scope)
    if valid_for is not None:
        doc["validFor"] = valid_for
    with api_errors("generate zone-token"), settings_of(ctx).client() as client:
        token = client.post_text("/tokens/zone", doc)
    typer.echo(token.strip())


def _tags(pairs: list[str]) -> dict[str, list[str]]:
    """kumactl's `--tag k=v1,v2` (repeatable; a repeated name adds values)."""
    tags: dict[str, list[str]] = {}
    for pair in pairs:
        key, eq, values = pair.partition("=")
        parts = [v.strip() for v in values.split(",") if v.strip()]
        if not eq or not key.strip() or not parts:
            raise typer.BadParameter(f"{pair!r}: expected NAME=VALUE[,VALUE...]", param_hint="--tag")
        tags.setdefault(key.strip(), []).extend(parts)
    return tags


@app.command("dataplane-token")
def dataplane_token(
    ctx: typer.Context,
    mesh: Annotated[str, typer.Option("--mesh", "-m", help="Mesh of the Dataplane.")] = "default",
    name: Annotated[str, typer.Option("--name", help="Name of the Dataplane (empty: any name).")] = "",
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", help="Required tag values, NAME=VALUE[,VALUE...]; repeatable."),
    ] = None,
    proxy_type: Annotated[
        str,
        typer.Option("--type", "--proxy-type", help="dataplane, gateway, ingress or egress (empty: any type)."),
    ] = "",
    valid_for: Annotated[
        str | None,
        typer.Option("--valid-for", help="How long the token is valid, e.g. 24h or 30d. Default: 10 years."),
    ] = None,
) -> None:
    """Print a data plane token for meshgate-dp --dataplane-token-file (issued by the global or a zone)."""
    doc: dict[str, object] = {"mesh": mesh}
    if name:
        doc["name"] = name
    if tag:
        doc["tags"] = _tags(tag)
    if proxy_type:
        doc["type"] = proxy_type
    if valid_for is not None:
        doc["validFor"] = valid_for
    with api_errors("generate dataplane-token"), settings_of(ctx).client() as client:
        token = client.post_text("/tokens/dataplane", doc)
    typer.echo(token.strip())


@app.command("user-token")
def user_token(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="Name of the user.")],
    valid_for: Annotated[str, typer.Option("--valid-for", help='How long the token is valid, e.g. "24h" or "30d".')],
    group: Annotated[
        list[str] | None,
        typer.Option("--group", help="Group of the user; repeat for several (mesh-system:admin: may do everything)."),
    ] = None,
) -> None:
    """Print a user token for the API at --api (admin only); send it with --auth-token or a config file."""
    doc: dict[str, object] = {"name": name, "groups": list(group or []), "validFor": valid_for}
    with api_errors("generate user-token"), settings_of(ctx).client() as client:
        token = client.post_text("/tokens/user", doc)
    typer.echo(token.strip())
