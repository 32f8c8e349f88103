"""`meshgatectl revoke token` and `meshgatectl rotate signing-key`: the token admin endpoints from the shell.

    revoke token --type zone|user|dataplane --id JTI [--mesh M]      POST /tokens/revocations
    rotate signing-key --type zone|user|dataplane [--mesh M] [--grace-period 24h]
                                                                    POST /tokens/signing-keys/rotate

A token's id is its `jti` claim (the middle part of the JWT, base64url JSON). Zone tokens live on the global,
user tokens on each control plane, data plane token keys and revocations on the global (zones read them).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from meshgate.cli.context import api_errors, fail, settings_of

__all__ = ["revoke_app", "rotate_app"]

revoke_app = typer.Typer(help="Revoke tokens.", no_args_is_help=True)
rotate_app = typer.Typer(help="Rotate token signing keys.", no_args_is_help=True)

_TYPES = ("zone", "user", "dataplane")
TypeOpt = Annotated[str, typer.Option("--type", help="zone, user or dataplane.")]
MeshOpt = Annotated[str, typer.Option("--mesh", "-m", help="Mesh of a dataplane token or key.")]


def _target(kind: str, mesh: str) -> dict[str, str]:
    if kind not in _TYPES:
        fail(f"--type: expected one of {', '.join(_TYPES)}, got {kind!r}")
    if kind == "dataplane" and not mesh:
        fail("--mesh: a dataplane token or key belongs to a mesh; name it")
    return {"type": kind, **({"mesh": mesh} if kind == "dataplane" else {})}


@revoke_app.command("token")
def revoke_token(
    ctx: typer.Context,
    kind: TypeOpt,
    token_id: Annotated[str, typer.Option("--id", help="The token's id (its jti claim).")],
    mesh: MeshOpt = "",
) -> None:
    """Revoke one token by id; it is refused from the next request on."""
    doc = {**_target(kind, mesh), "id": token_id}
    with api_errors(f"revoke {kind} token {token_id}"), settings_of(ctx).client() as client:
        answer = json.loads(client.post_text("/tokens/revocations", doc))
    already = "" if answer.get("new", True) else " (it already was)"
    typer.echo(f"revoked {kind} token {token_id}{already}")


@rotate_app.command("signing-key")
def rotate_signing_key(
    ctx: typer.Context,
    kind: TypeOpt,
    mesh: MeshOpt = "",
    grace_period: Annotated[
        str, typer.Option("--grace-period", help="How long tokens of the older keys stay valid (0s: at once).")
    ] = "24h",
) -> None:
    """Start signing with a new key; tokens of older keys verify until the grace period ends."""
    doc = {**_target(kind, mesh), "gracePeriod": grace_period}
    with api_errors(f"rotate {kind} signing key"), settings_of(ctx).client() as client:
        answer = json.loads(client.post_text("/tokens/signing-keys/rotate", doc))
    typer.echo(f"{kind} tokens are now signed with key {answer.get('keyId')}; older keys retire in {grace_period}")
