"""Gateway proxies on a Kubernetes zone prove who they are with a projected service account token.

The gateway Pods the zone renders (`meshgate.k8s.container`) mount a `serviceAccountToken` projected volume for
the audience `TOKEN_AUDIENCE` and hand it to `meshgate-dp --dataplane-token-file`; the zone's xDS gate asks the
API server about it with a TokenReview and then checks that the Pod it is bound to is a replica of the
MeshGatewayInstance whose Dataplane the proxy claims. Kuma does the same in `pkg/xds/auth/k8s/authenticator.go`
(TokenReview, then the token's service account must be the Pod's); meshgate also pins the audience, requires a
Pod-bound token, and checks the claimed mesh and gateway tags against the instance.

    review_token(token, [TOKEN_AUDIENCE])            authenticated, audience ours
      user.username  system:serviceaccount:<ns>:<sa>  a service account, not a user or node
      user.extra     authentication.kubernetes.io/pod-name, pod-uid   bound to a Pod (projected volume)
    Dataplane name   <pod>.<ns>                       as the rendered pod sends it ($(POD_NAME).$(POD_NAMESPACE))
    Pod <ns>/<pod>   same uid; spec.serviceAccountName (or "default") == <sa>
                     label app=<instance>, controlled by a ReplicaSet <instance>-<hash>
    MeshGatewayInstance <ns>/<instance>
                     its mesh == the Dataplane's mesh; its proxy tags == the Dataplane's gateway tags; builtin gateway

So a token proves a Dataplane only inside its own namespace, for a Pod of that instance: whoever may create Pods
with the instance's label in that namespace may also edit the instance itself, so the boundary is the
namespace, as in Kuma. Refusals raise `ServiceAccountTokenRefused` with a short `reason` (a metric label) and a
message that says what did not match; an API server that cannot be asked is `unavailable` (retry), not a
refusal of the proxy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from meshgate.k8s.api import Kind, KubeApi
from meshgate.k8s.errors import KubeError
from meshgate.k8s.instance import mesh_of, parse_instance

__all__ = [
    "POD_NAME_EXTRA",
    "POD_UID_EXTRA",
    "TOKEN_AUDIENCE",
    "ServiceAccountIdentity",
    "ServiceAccountTokenRefused",
    "ServiceAccountTokens",
]

# Who the projected token is for: the zone, and nobody else. The API server refuses it for itself (so a stolen
# proxy token cannot call the API), and the zone refuses the automounted token (audience: the API server).
TOKEN_AUDIENCE: Final = "meshgate-zone"  # noqa: S105 - an audience, not a secret
POD_NAME_EXTRA: Final = "authentication.kubernetes.io/pod-name"
POD_UID_EXTRA: Final = "authentication.kubernetes.io/pod-uid"
_SELECTOR_LABEL: Final = "app"  # meshgate.k8s.render's Deployment selector


class ServiceAccountTokenRefused(Exception):
    """The token does not prove the Dataplane. `reason` is one of a few fixed words; str() says why."""

    def __init__(self, reason: str, message: str, *, unavailable: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.unavailable = unavailable


@dataclass(frozen=True, slots=True)
class ServiceAccountIdentity:
    namespace: str
    service_account: str
    pod: str
    instance: str


def _first(extra: Mapping[str, Any], key: str) -> str:
    values = extra.get(key) or []
    return str(values[0]) if isinstance(values, list) and values else ""


class ServiceAccountTokens:
    """Checks a proxy's service account token against the Dataplane it claims (see the module docstring)."""

    def __init__(self, api: KubeApi, audience: str = TOKEN_AUDIENCE) -> None:
        self._api = api
        self.audience = audience

    async def authenticate(
        self, token: str, *, name: str, mesh: str, tags: Mapping[str, Sequence[str]], proxy_type: str
    ) -> ServiceAccountIdentity:
        try:
            status = await self._api.review_token(token, [self.audience])
        except KubeError as exc:
            raise ServiceAccountTokenRefused(
                "kube_unavailable",
                f"could not ask the Kubernetes API server to review the token: {exc}",
                unavailable=True,
            ) from None
        if not status.get("authenticated"):
            error = str(status.get("error") or "not authenticated")[:200]
            raise ServiceAccountTokenRefused(
                "sa_unauthenticated",
                f"the Kubernetes API server did not authenticate the service account token for audience"
                f" {self.audience!r}: {error}",
            )
        audiences = status.get("audiences")
        if isinstance(audiences, list) and self.audience not in audiences:
            raise ServiceAccountTokenRefused("sa_unauthenticated", f"the token is not for audience {self.audience!r}")
        user = status.get("user") or {}
        username = str(user.get("username", ""))
        parts = username.split(":")
        if len(parts) != 4 or parts[:2] != ["system", "serviceaccount"]:
            raise ServiceAccountTokenRefused(
                "sa_not_service_account", f"the token's user {username[:100]!r} is not a service account"
            )
        namespace, service_account = parts[2], parts[3]
        extra = user.get("extra") or {}
        pod_name, pod_uid = _first(extra, POD_NAME_EXTRA), _first(extra, POD_UID_EXTRA)
        if not pod_name:
            raise ServiceAccountTokenRefused(
                "sa_not_pod_bound",
                f"the token of service account {namespace}/{service_account} is not bound to a Pod: mount a projected"
                " serviceAccountToken volume",
            )
        expected_name = f"{pod_name}.{namespace}"
        if name != expected_name:
            raise ServiceAccountTokenRefused(
                "wrong_identity",
                f"proxy name from requestor: {name} is different than the token's Pod: {expected_name}",
            )
        pod = await self._get(Kind.POD, namespace, pod_name)
        meta = (pod or {}).get("metadata") or {}
        if pod is None or (pod_uid and meta.get("uid") != pod_uid):
            raise ServiceAccountTokenRefused("wrong_identity", f"Pod {namespace}/{pod_name} of the token is gone")
        pod_account = ((pod.get("spec") or {}).get("serviceAccountName")) or "default"
        if pod_account != service_account:
            raise ServiceAccountTokenRefused(
                "wrong_identity",
                f"service account of the token {service_account!r} is not the Pod's {pod_account!r}",
            )
        instance_name = (meta.get("labels") or {}).get(_SELECTOR_LABEL, "")
        if not instance_name or not _controlled_by_replica_set_of(meta, instance_name):
            raise ServiceAccountTokenRefused(
                "wrong_identity", f"Pod {namespace}/{pod_name} is not a replica of a MeshGatewayInstance"
            )
        obj = await self._get(Kind.MESH_GATEWAY_INSTANCE, namespace, instance_name)
        if obj is None:
            raise ServiceAccountTokenRefused(
                "wrong_identity",
                f"Pod {namespace}/{pod_name} belongs to MeshGatewayInstance {namespace}/{instance_name}, which does"
                " not exist",
            )
        instance = parse_instance(obj).instance
        ns_obj = await self._get(Kind.NAMESPACE, "", namespace)
        instance_mesh = mesh_of(instance, ((ns_obj or {}).get("metadata") or {}).get("annotations") or {})
        where = f"MeshGatewayInstance {namespace}/{instance_name}"
        if mesh != instance_mesh:
            raise ServiceAccountTokenRefused(
                "wrong_identity", f"proxy mesh from requestor: {mesh} is different than {where}'s: {instance_mesh}"
            )
        if proxy_type != "gateway":
            raise ServiceAccountTokenRefused(
                "wrong_identity", f"a service account token of {where} proves a builtin gateway, not a {proxy_type}"
            )
        expected_tags = {k: [v] for k, v in sorted(instance.proxy_tags().items())}
        claimed = {k: sorted(v) for k, v in sorted(tags.items())}
        if claimed != expected_tags:
            raise ServiceAccountTokenRefused(
                "wrong_identity", f"proxy tags from requestor: {claimed} are different than {where}'s: {expected_tags}"
            )
        return ServiceAccountIdentity(namespace, service_account, pod_name, instance_name)

    async def _get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._api.get(kind, namespace, name)
        except KubeError as exc:
            raise ServiceAccountTokenRefused(
                "kube_unavailable", f"could not read {kind.value} {namespace}/{name}: {exc}", unavailable=True
            ) from None


def _controlled_by_replica_set_of(meta: Mapping[str, Any], instance: str) -> bool:
    """The Deployment `<instance>` makes ReplicaSets `<instance>-<pod-template-hash>`, which make the Pods."""
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == "ReplicaSet":
            prefix, _, suffix = str(ref.get("name", "")).rpartition("-")
            return prefix == instance and bool(suffix)
    return False
