"""FakeKubeApi: stands in for the Kubernetes API server, which cannot run here. For tests only.

It implements `KubeApi` over an in-memory object map with the API server behaviour the reconciler relies on:
- resourceVersions that grow with every write, uids, `metadata.generation` that moves when `spec` does;
- server-side apply that creates or updates, keeps what the server allocated (a Service's cluster IPs and
  node ports) and the `status`, and is a no-op (no new version, no event) when nothing changes;
- watches that replay from a resourceVersion, fail with 410 Gone when that version has been compacted away,
  and are closed with 410 when a watcher falls too far behind, as the API server's watch cache does;
- the status subresource as a JSON merge patch; a namespace that must exist before anything is created in it;
- optionally, the garbage collector's cascade through owner references (off by default, so tests can check
  that the reconciler deletes what it created without relying on it);
- TokenReview for the service account tokens it issued (`issue_token`): a token is authenticated while it is
  unexpired, its audiences meet the review's, and, for a token bound to a Pod, that Pod (same uid) still
  exists; the answer carries the user name `system:serviceaccount:<ns>:<sa>` and the bound Pod in `extra`, as
  the API server's. Tokens look like the API server's JWTs (claims readable, signature meaningless).

It simplifies server-side apply: meshgate is assumed to be the only manager of what it applies, so an apply
replaces labels, annotations, owner references and spec (other than allocated fields) outright.

The cluster side, what users and other controllers do, has its own methods: `create_namespace`, `create`,
`update`, `remove`, `issue_token`, `set_deployment_available`, `set_load_balancer_ingress`, `set_cluster_ip`, `fail`,
`expire_watches`. Every `KubeApi` call is recorded in `calls`.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import secrets
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from meshgate.k8s.api import Kind, KubeObject, ObjectList, WatchEvent, WatchEventType
from meshgate.k8s.errors import KubeApiError, KubeError, KubeGoneError, api_error
from meshgate.k8s.status import merge_patch
from meshgate.k8s.token_review import POD_NAME_EXTRA, POD_UID_EXTRA

__all__ = ["API_SERVER_AUDIENCE", "Call", "FakeKubeApi", "apply_merge_patch"]

ObjectKey = tuple[Kind, str, str]

# How many events a watcher may fall behind before its stream is closed with 410 Gone. The API server's watch
# cache gives each watcher a bounded channel too and drops a blocked watcher rather than block every writer;
# the client then lists again. Small enough that a test can overflow it on purpose, large enough that a
# reconciler draining normally never does.
WATCH_BUFFER = 100
# How many past events are kept for a watch to resume from, like the API server's compacted history.
HISTORY = 1000
# The API server's own audience: what a token requested without one (the automounted token) is for.
API_SERVER_AUDIENCE = "https://kubernetes.default.svc.cluster.local"


@dataclass(frozen=True, slots=True)
class _IssuedToken:
    namespace: str
    service_account: str
    pod: str
    pod_uid: str
    audiences: tuple[str, ...]
    expires_at: float


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    kind: Kind
    namespace: str
    name: str
    body: KubeObject | None = None


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: apply `patch` to `target`, returning a new value."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


class _Watcher:
    def __init__(self, kind: Kind, send: MemoryObjectSendStream[WatchEvent]) -> None:
        self.kind = kind
        self.send = send
        self.overflowed = False

    def offer(self, event: WatchEvent) -> None:
        if self.overflowed:
            return
        try:
            self.send.send_nowait(event)
        except anyio.WouldBlock:
            self.overflowed = True
            self.send.close()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass


class FakeKubeApi:
    """FakeKubeApi: stands in for the API server, which cannot run here."""

    def __init__(
        self,
        *,
        validate: Callable[[KubeObject], None] | None = None,
        garbage_collect: bool = False,
        watch_buffer: int = WATCH_BUFFER,
        history: int = HISTORY,
    ) -> None:
        self._objects: dict[ObjectKey, KubeObject] = {}
        self._version = 0
        self._uids = itertools.count(1)
        self._ips = itertools.count(10)
        self._node_ports = itertools.count(30000)
        self._history: deque[tuple[int, Kind, WatchEvent]] = deque(maxlen=history)
        self._watchers: set[_Watcher] = set()
        self._faults: dict[str, deque[KubeError]] = {}
        self._validate = validate
        self._garbage_collect = garbage_collect
        self._watch_buffer = watch_buffer
        self.calls: list[Call] = []
        self._tokens: dict[str, _IssuedToken] = {}
        # Every TokenReview asked for: (token, audiences).
        self.token_reviews: list[tuple[str, tuple[str, ...]]] = []

    # -- inspection --------------------------------------------------------------------------------------------

    def object(self, kind: Kind, namespace: str, name: str) -> KubeObject | None:
        obj = self._objects.get((kind, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def objects(self, kind: Kind) -> list[KubeObject]:
        return [copy.deepcopy(obj) for (k, _, _), obj in sorted(self._objects.items()) if k is kind]

    def calls_of(self, method: str, kind: Kind | None = None) -> list[Call]:
        return [c for c in self.calls if c.method == method and (kind is None or c.kind is kind)]

    @property
    def resource_version(self) -> str:
        return str(self._version)

    # -- the cluster side ------------------------------------------------------------------------------------

    def fail(self, method: str, error: KubeError, times: int = 1) -> None:
        """The next `times` calls of `method` ("get", "apply", ...) raise `error`."""
        self._faults.setdefault(method, deque()).extend([error] * times)

    def create_namespace(self, name: str, annotations: Mapping[str, str] | None = None) -> KubeObject:
        meta: dict[str, Any] = {"name": name}
        if annotations:
            meta["annotations"] = dict(annotations)
        return self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": meta})

    def create(self, obj: KubeObject) -> KubeObject:
        kind, namespace, name = self._identity(obj)
        if (kind, namespace, name) in self._objects:
            raise api_error(409, "AlreadyExists", f"{kind.value} {name!r} already exists")
        self._require_namespace(kind, namespace)
        stored = copy.deepcopy(obj)
        meta = stored.setdefault("metadata", {})
        meta["uid"] = meta.get("uid") or f"uid-{next(self._uids)}"
        meta["generation"] = 1
        meta["creationTimestamp"] = "2024-01-01T00:00:00Z"
        self._store(kind, namespace, name, stored, WatchEventType.ADDED)
        return copy.deepcopy(stored)

    def update(self, obj: KubeObject) -> KubeObject:
        """Replaces metadata labels and annotations and the spec, as `kubectl edit` would."""
        kind, namespace, name = self._identity(obj)
        current = self._objects.get((kind, namespace, name))
        if current is None:
            raise api_error(404, "NotFound", f"{kind.value} {name!r} not found")
        updated = copy.deepcopy(current)
        for field in ("labels", "annotations"):
            if field in obj.get("metadata", {}):
                updated["metadata"][field] = copy.deepcopy(obj["metadata"][field])
            else:
                updated["metadata"].pop(field, None)
        if "spec" in obj:
            updated["spec"] = copy.deepcopy(obj["spec"])
        return self._write(kind, namespace, name, updated)

    def remove(self, kind: Kind, namespace: str, name: str) -> bool:
        """Deletes as a user would; with garbage collection on, dependents go too."""
        obj = self._objects.pop((kind, namespace, name), None)
        if obj is None:
            return False
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)
        self._publish(kind, WatchEvent(WatchEventType.DELETED, copy.deepcopy(obj)))
        if self._garbage_collect:
            uid = obj["metadata"].get("uid")
            for key, other in list(self._objects.items()):
                refs = other.get("metadata", {}).get("ownerReferences") or []
                if key in self._objects and any(ref.get("uid") == uid for ref in refs):
                    self.remove(*key)
        return True

    def issue_token(
        self,
        namespace: str,
        service_account: str,
        *,
        pod: str = "",
        audiences: Sequence[str] = (API_SERVER_AUDIENCE,),
        expires_in: float = 3600.0,
    ) -> str:
        """A service account token, as the kubelet gets for a projected volume (bound to `pod`, which must exist)
        or as a legacy Secret holds (no pod)."""
        pod_uid = ""
        claims: dict[str, Any] = {"namespace": namespace, "serviceaccount": {"name": service_account}}
        if pod:
            pod_uid = self._must(Kind.POD, namespace, pod)["metadata"]["uid"]
            claims["pod"] = {"name": pod, "uid": pod_uid}
        expires_at = time.time() + expires_in
        payload = {
            "aud": list(audiences),
            "exp": int(expires_at),
            "iss": API_SERVER_AUDIENCE,
            "sub": f"system:serviceaccount:{namespace}:{service_account}",
            "kubernetes.io": claims,
        }

        def part(value: Mapping[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

        token = f"{part({'alg': 'RS256', 'kid': 'fake'})}.{part(payload)}.{secrets.token_urlsafe(32)}"
        self._tokens[token] = _IssuedToken(namespace, service_account, pod, pod_uid, tuple(audiences), expires_at)
        return token

    def set_deployment_available(self, namespace: str, name: str, status: str, reason: str = "") -> None:
        """What the Deployment controller reports: the `Available` condition."""
        current = self._must(Kind.DEPLOYMENT, namespace, name)
        condition = {"type": "Available", "status": status, "reason": reason or f"Available{status}"}
        others = [c for c in current.get("status", {}).get("conditions", []) if c.get("type") != "Available"]
        self._set_status(Kind.DEPLOYMENT, namespace, name, {"conditions": [*others, condition]})

    def set_load_balancer_ingress(self, namespace: str, name: str, ingress: list[dict[str, Any]]) -> None:
        """What a cloud load-balancer controller reports."""
        self._must(Kind.SERVICE, namespace, name)
        self._set_status(Kind.SERVICE, namespace, name, {"loadBalancer": {"ingress": ingress} if ingress else {}})

    def set_cluster_ip(self, namespace: str, name: str, ips: list[str]) -> None:
        current = copy.deepcopy(self._must(Kind.SERVICE, namespace, name))
        current["spec"]["clusterIPs"] = list(ips)
        current["spec"]["clusterIP"] = ips[0] if ips else ""
        self._write(Kind.SERVICE, namespace, name, current)

    def expire_watches(self) -> None:
        """Closes every watch with 410 Gone, as after an etcd compaction."""
        for watcher in list(self._watchers):
            watcher.overflowed = True
            watcher.send.close()

    # -- KubeApi ---------------------------------------------------------------------------------------------

    def _call(self, method: str, kind: Kind, namespace: str, name: str, body: KubeObject | None = None) -> None:
        self.calls.append(Call(method, kind, namespace, name, copy.deepcopy(body)))
        faults = self._faults.get(method)
        if faults:
            raise faults.popleft()

    async def get(self, kind: Kind, namespace: str, name: str) -> KubeObject | None:
        self._call("get", kind, namespace, name)
        return self.object(kind, namespace, name)

    async def list(self, kind: Kind) -> ObjectList:
        self._call("list", kind, "", "")
        return ObjectList(self.objects(kind), self.resource_version)

    async def watch(self, kind: Kind, *, resource_version: str) -> AsyncGenerator[WatchEvent, None]:
        self._call("watch", kind, "", "")
        since = int(resource_version or 0)
        if self._history and since < self._history[0][0] - 1:
            raise KubeGoneError(410, "Expired", f"too old resource version: {since} ({self._history[0][0] - 1})")
        send, receive = anyio.create_memory_object_stream[WatchEvent](self._watch_buffer)
        watcher = _Watcher(kind, send)
        for version, event_kind, event in self._history:
            if version > since and event_kind is kind:
                watcher.offer(event)
        self._watchers.add(watcher)
        try:
            async with receive:
                async for event in receive:
                    yield event
            if watcher.overflowed:
                raise KubeGoneError(410, "Expired", "watch closed: the watcher fell behind")
        finally:
            self._watchers.discard(watcher)
            send.close()

    async def apply(self, obj: KubeObject) -> KubeObject:
        kind, namespace, name = self._identity(obj)
        self._call("apply", kind, namespace, name, obj)
        if self._validate is not None:
            try:
                self._validate(obj)
            except Exception as exc:
                raise KubeApiError(422, "Invalid", str(exc)) from exc
        self._require_namespace(kind, namespace)
        current = self._objects.get((kind, namespace, name))
        if current is None:
            created = copy.deepcopy(obj)
            if kind is Kind.SERVICE:
                self._allocate(created, None)
            created.setdefault("status", {"loadBalancer": {}} if kind is Kind.SERVICE else {})
            return self.create(created)
        updated = copy.deepcopy(current)
        for field in ("labels", "annotations", "ownerReferences"):
            if field in obj["metadata"]:
                updated["metadata"][field] = copy.deepcopy(obj["metadata"][field])
            else:
                updated["metadata"].pop(field, None)
        updated["spec"] = copy.deepcopy(obj.get("spec", {}))
        if kind is Kind.SERVICE:
            self._allocate(updated, current)
        return self._write(kind, namespace, name, updated)

    async def delete(self, kind: Kind, namespace: str, name: str) -> bool:
        self._call("delete", kind, namespace, name)
        return self.remove(kind, namespace, name)

    async def patch_status(self, kind: Kind, namespace: str, name: str, patch: KubeObject) -> KubeObject | None:
        self._call("patch_status", kind, namespace, name, patch)
        if (kind, namespace, name) not in self._objects:
            return None
        return self._set_status(kind, namespace, name, patch.get("status"))

    async def review_token(self, token: str, audiences: Sequence[str]) -> KubeObject:
        self.token_reviews.append((token, tuple(audiences)))
        faults = self._faults.get("review_token")
        if faults:
            raise faults.popleft()
        issued = self._tokens.get(token)
        if issued is None or issued.expires_at <= time.time():
            return {
                "authenticated": False,
                "error": "[invalid bearer token, square/go-jose: error in cryptographic primitive]",
            }
        wanted = tuple(audiences) or (API_SERVER_AUDIENCE,)
        common = [a for a in wanted if a in issued.audiences]
        if not common:
            return {
                "authenticated": False,
                "error": f"[invalid bearer token, token audiences {list(issued.audiences)} is invalid for the target"
                f" audiences {list(wanted)}]",
            }
        extra: dict[str, list[str]] = {}
        if issued.pod:
            pod = self._objects.get((Kind.POD, issued.namespace, issued.pod))
            if pod is None or pod["metadata"].get("uid") != issued.pod_uid:
                return {
                    "authenticated": False,
                    "error": f"[invalid bearer token, pod {issued.pod} (uid {issued.pod_uid}) no longer exists]",
                }
            extra = {POD_NAME_EXTRA: [issued.pod], POD_UID_EXTRA: [issued.pod_uid]}
        user: dict[str, Any] = {
            "username": f"system:serviceaccount:{issued.namespace}:{issued.service_account}",
            "uid": f"sa-uid-{issued.namespace}-{issued.service_account}",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{issued.namespace}", "system:authenticated"],
        }
        if extra:
            user["extra"] = extra
        return {"authenticated": True, "user": user, "audiences": common}

    # -- internals -------------------------------------------------------------------------------------------

    @staticmethod
    def _identity(obj: Mapping[str, Any]) -> ObjectKey:
        kind = Kind(obj["kind"])
        meta = obj.get("metadata", {})
        return kind, meta.get("namespace", "") if kind.namespaced else "", meta["name"]

    def _must(self, kind: Kind, namespace: str, name: str) -> KubeObject:
        obj = self._objects.get((kind, namespace, name))
        if obj is None:
            raise api_error(404, "NotFound", f"{kind.value} {namespace}/{name} not found")
        return obj

    def _require_namespace(self, kind: Kind, namespace: str) -> None:
        if kind.namespaced and (Kind.NAMESPACE, "", namespace) not in self._objects:
            raise api_error(404, "NotFound", f'namespaces "{namespace}" not found')

    def _allocate(self, service: KubeObject, current: KubeObject | None) -> None:
        """Keeps (or assigns) what the API server allocates for a Service: cluster IPs and node ports."""
        spec = service.setdefault("spec", {})
        old_spec = (current or {}).get("spec", {})
        if old_spec.get("clusterIPs"):
            spec.setdefault("clusterIP", old_spec.get("clusterIP"))
            spec.setdefault("clusterIPs", old_spec.get("clusterIPs"))
        elif "clusterIPs" not in spec:
            ip = f"10.96.0.{next(self._ips)}"
            spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            old_ports = {p.get("port"): p.get("nodePort") for p in old_spec.get("ports", [])}
            for port in spec.get("ports", []):
                port.setdefault("nodePort", old_ports.get(port.get("port")) or next(self._node_ports))

    def _set_status(self, kind: Kind, namespace: str, name: str, patch: Any) -> KubeObject:
        updated = copy.deepcopy(self._must(kind, namespace, name))
        updated["status"] = apply_merge_patch(updated.get("status") or {}, patch or {})
        return self._write(kind, namespace, name, updated, status_only=True)

    def _write(
        self, kind: Kind, namespace: str, name: str, updated: KubeObject, *, status_only: bool = False
    ) -> KubeObject:
        current = self._objects[(kind, namespace, name)]
        if updated == current:
            return copy.deepcopy(current)
        if not status_only and merge_patch(current.get("spec"), updated.get("spec")) not in ({}, None):
            updated["metadata"]["generation"] = int(current["metadata"].get("generation", 1)) + 1
        self._store(kind, namespace, name, updated, WatchEventType.MODIFIED)
        return copy.deepcopy(updated)

    def _store(self, kind: Kind, namespace: str, name: str, obj: KubeObject, event: WatchEventType) -> None:
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)
        self._objects[(kind, namespace, name)] = obj
        self._publish(kind, WatchEvent(event, copy.deepcopy(obj)))

    def _publish(self, kind: Kind, event: WatchEvent) -> None:
        self._history.append((self._version, kind, event))
        for watcher in list(self._watchers):
            if watcher.kind is kind:
                watcher.offer(event)
