"""`meshgatectl generate zone-token`: a token a zone presents to a global running `--kds-auth cp-token`.

As kumactl's `generate zone-token`, the global signs it (`POST /tokens/zone` on `--api`, which must be the
global's API) and the command prints it, so it can go straight to a file for the zone's `--cp-token-path`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from meshgate.cli.client import ApiClient
from meshgate.cli.context import api_errors, settings_of

__all__ = ["app"]

app = typer.Typer(help="Generate tokens for zones.", no_args_is_help=True)


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
    with api_errors("generate zone-token"), ApiClient(settings_of(ctx).api) as client:
        token = client.post_text("/tokens/zone", doc)
    typer.echo(token.strip())
