"""Zone proxies at the xDS door: a ZoneIngress or ZoneEgress proxy (`node.id` `.<name>`, in no mesh), what it
registers and the token that proves it. Used by `zone_cp.dp_server`.

Kuma's way (pkg/core/xds/metadata.go, pkg/xds/bootstrap/generator.go): kuma-dp `--proxy-type ingress|egress`
names the proxy `.<name>` and sends `dataplane.proxyType` (`ingress`, `egress`) and the resource itself
(`dataplane.resource`, a ZoneIngress or ZoneEgress document) in its node metadata. The zone registers it with
origin zone, like a Dataplane, and removes it when its last stream closes. A proxy that sends no proxy type
and no document type is an ingress (what meshgate-dp sent before egress existed).

    zone_proxy_kind(node)                  -> kinds.ZONE_INGRESS or kinds.ZONE_EGRESS
    zone_proxy_from_metadata(...)          -> the resource to register, or StreamRefused naming the field
    verify_zone_proxy(tokens, proxy, ...)  -> the token's expiry, or StreamRefused

The credential is a data plane token of type `ingress` (`egress`), signed by the keys of the mesh it names and
bound to the proxy's name unless its Name is empty (`meshgatectl generate dataplane-token --type egress --mesh M
--name N`). Kuma 2.7 asks for a zone token of scope `ingress` / `egress` instead
(pkg/xds/auth/universal/authenticator.go:45), which a meshgate zone cannot check: zone token keys never leave
the global. A data plane token is what this door already verifies, re-checks and revokes.
"""

from __future__ import annotations

import contextlib
from typing import Any, Final

import grpc
from envoy.config.core.v3 import base_pb2

from meshgate.auth.jwt import TokenError, unverified_payload
from meshgate.resources import codec, kinds
from meshgate.resources.errors import ValidationError
from meshgate.resources.model import LABEL_ORIGIN, LABEL_ZONE, Origin, Resource
from meshgate.tokens.keys import SigningKeyMissing
from meshgate.tokens.services import DataplaneTokens
from meshgate.transport.ads_server import StreamRefused
from meshgate.xds.ads import ProxyId

__all__ = [
    "FIELD_PROXY_TYPE",
    "PROXY_TYPES",
    "token_mesh",
    "verify_zone_proxy",
    "zone_proxy_from_metadata",
    "zone_proxy_kind",
]

# Kuma's node metadata field (pkg/core/xds/metadata.go: FieldDataplaneProxyType).
FIELD_PROXY_TYPE: Final = "dataplane.proxyType"
# kuma-dp's proxy type of each zone proxy kind, which is also its token's Type.
PROXY_TYPES: Final = {kinds.ZONE_INGRESS: "ingress", kinds.ZONE_EGRESS: "egress"}
# A refusal quotes at most this much of what the proxy sent.
_MAX_LOGGED = 300


def token_mesh(token: str) -> str:
    """The Mesh claim of a token, unverified: only to pick the mesh whose keys verify it, or explain a refusal."""
    with contextlib.suppress(TokenError, ValueError):
        mesh = unverified_payload(token).get("Mesh")
        return mesh if isinstance(mesh, str) else ""
    return ""


def _string(node: base_pb2.Node, field: str) -> str:
    value = node.metadata.fields.get(field)
    return value.string_value if value is not None and value.WhichOneof("kind") == "string_value" else ""


def zone_proxy_kind(node: base_pb2.Node, text: str | None) -> str:
    """The kind a `.<name>` proxy registers: `dataplane.proxyType` says, else the document's `type`, else
    ZoneIngress."""
    declared = _string(node, FIELD_PROXY_TYPE)
    for kind, proxy_type in PROXY_TYPES.items():
        if declared == proxy_type:
            return kind
    if text is not None:
        with contextlib.suppress(ValidationError):
            docs = codec.load_documents(text)
            if len(docs) == 1 and docs[0].get("type") == kinds.ZONE_EGRESS:
                return kinds.ZONE_EGRESS
    return kinds.ZONE_INGRESS


def zone_proxy_from_metadata(proxy: ProxyId, text: str | None, kind: str, *, field: str, max_bytes: int) -> Resource:
    """The ZoneIngress or ZoneEgress (`kind`) a zone proxy sends in its metadata, as kuma-dp `--proxy-type
    ingress|egress` does; registered with origin zone, like a Dataplane."""
    proxy_type = PROXY_TYPES[kind]
    if text is None or len(text) > max_bytes:
        raise StreamRefused(
            "invalid_dataplane",
            f"a {kind} proxy must send its {kind} (at most {max_bytes} bytes) as node metadata"
            f" {field!r} (meshgate-dp --proxy-type {proxy_type} --dataplane-file)",
            grpc.StatusCode.INVALID_ARGUMENT,
        )
    try:
        docs = codec.load_documents(text)
        if len(docs) != 1 or docs[0].get("type", kind) != kind:
            raise StreamRefused("invalid_dataplane", f"{field} must hold one {kind}", grpc.StatusCode.INVALID_ARGUMENT)
        if docs[0].get("name", proxy.name) != proxy.name:
            raise StreamRefused(
                "invalid_dataplane",
                f"{field} names {docs[0].get('name')}, not node.id {proxy}",
                grpc.StatusCode.INVALID_ARGUMENT,
            )
        given = docs[0].get("labels")
        labels: dict[str, Any] = dict(given) if isinstance(given, dict) else {}
        labels.pop(LABEL_ZONE, None)
        doc = {**docs[0], "type": kind, "name": proxy.name, "labels": {**labels, LABEL_ORIGIN: Origin.ZONE.value}}
        doc.pop("zone", None)  # empty in the zone that registers it; the global sets it
        doc.pop("availableServices", None)  # an ingress's: the zone computes them
        return codec.load(doc, kind=kind)
    except ValidationError as exc:
        problems = "; ".join(map(str, exc.violations))[:_MAX_LOGGED]
        raise StreamRefused(
            "invalid_dataplane", f"invalid {kind} in {field}: {problems}", grpc.StatusCode.INVALID_ARGUMENT
        ) from None


async def verify_zone_proxy(tokens: DataplaneTokens, proxy: ProxyId, token: str, kind: str) -> float:
    """A zone proxy's credential (module docstring): the token's expiry, or StreamRefused naming why not."""
    proxy_type = PROXY_TYPES[kind]
    how = f"meshgatectl generate dataplane-token --type {proxy_type} --mesh M --name N"
    mesh = token_mesh(token)
    if not mesh:
        raise StreamRefused(
            "wrong_identity",
            f"authentication failed: a {kind} needs a data plane token of type {proxy_type}, which names a mesh"
            f" ({how})",
        )
    try:
        claims = await tokens.verify(token, mesh=mesh, name=proxy.name, tags={}, proxy_type=proxy_type)
    except SigningKeyMissing as exc:
        raise StreamRefused("no_signing_key", f"authentication failed: {exc}", grpc.StatusCode.UNAVAILABLE) from None
    except TokenError as exc:
        raise StreamRefused(exc.code, f"authentication failed: {exc}") from None
    if claims.type != proxy_type:
        # A token of any type (empty Type) is a Dataplane's: it must not also register a zone proxy.
        raise StreamRefused(
            "wrong_identity",
            f"authentication failed: a {kind} needs a token of type {proxy_type}, not {claims.type or 'any'!r}",
        )
    return float(claims.expires_at)
