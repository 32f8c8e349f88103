"""`KubeApi` on lightkube's AsyncClient: the only module that talks to a real Kubernetes API server.

Why lightkube rather than kubernetes-asyncio: it is typed (ships `py.typed`, so mypy strict checks our calls),
its transport runs on anyio like the rest of meshgate, it has server-side apply as a first-class call
(`PatchType.APPLY` with a field manager and `force`), generic resources for custom kinds with their status
subresource, and `KubeConfig.from_env()` that tries the in-cluster service account and then `KUBECONFIG` in
one step. kubernetes-asyncio is aiohttp/asyncio-only, untyped generated code, and needs a content-type override
for every apply.

Foreign exceptions stop here: lightkube's `ApiError` becomes `KubeApiError` (or a subclass by code), transport
failures become `KubeUnavailableError`, configuration problems `KubeConfigError`. The objects go in and out as
plain dicts (`KubeObject`); lightkube's models are not part of the interface.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
from lightkube import ALL_NS, ApiError, AsyncClient, ConfigError, KubeConfig, NotReadyError
from lightkube.core.generic_client import ListAsyncIterable
from lightkube.core.resource import NamespacedResource
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.authentication_v1 import TokenReviewSpec
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.authentication_v1 import TokenReview
from lightkube.resources.core_v1 import Namespace, Pod, Service
from lightkube.types import PatchType

from meshgate.k8s.api import FIELD_MANAGER, Kind, KubeObject, ObjectList, WatchEvent, WatchEventType
from meshgate.k8s.errors import KubeApiError, KubeConfigError, KubeError, KubeUnavailableError, api_error
from meshgate.k8s.instance import GROUP, KIND, PLURAL, VERSION

__all__ = ["LightkubeApi", "load_config", "open_api"]

MeshGatewayInstanceResource = create_namespaced_resource(GROUP, VERSION, KIND, PLURAL)

_NAMESPACED: dict[Kind, type[NamespacedResource]] = {
    Kind.MESH_GATEWAY_INSTANCE: MeshGatewayInstanceResource,
    Kind.DEPLOYMENT: Deployment,
    Kind.SERVICE: Service,
    Kind.POD: Pod,
}

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def load_config(environ: Mapping[str, str] | None = None, service_account: Path = SERVICE_ACCOUNT_DIR) -> KubeConfig:
    """In-cluster configuration, else the file `KUBECONFIG` names; KubeConfigError saying which is missing.

    Unlike lightkube's `from_env`, a missing KUBECONFIG does not fall back to ~/.kube/config: a control plane
    should not pick up a developer's cluster by accident."""
    env = os.environ if environ is None else environ
    if (service_account / "token").exists():
        try:
            return KubeConfig.from_service_account(service_account=service_account)
        except ConfigError as exc:
            raise KubeConfigError(f"in-cluster configuration in {service_account} is unusable: {exc}") from exc
    path = env.get("KUBECONFIG", "")
    if not path:
        raise KubeConfigError(
            "no Kubernetes API configuration: not running in a cluster (no service account token in "
            f"{service_account}) and KUBECONFIG is not set"
        )
    # KUBECONFIG may list several files; like kubectl's first-file rule for writes, the first one is read.
    first = path.split(os.pathsep)[0]
    try:
        config = KubeConfig.from_file(first)
        # Resolves the current context now, so that a config without one fails here and not at the first call.
        config.get()
    except (ConfigError, OSError, ValueError, KeyError, TypeError) as exc:
        raise KubeConfigError(f"KUBECONFIG {first}: {exc}") from exc
    return config


def _to_dict(obj: object) -> KubeObject:
    to_dict: Callable[[], dict[str, Any]] | None = getattr(obj, "to_dict", None)
    if to_dict is not None:
        return to_dict()
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"unexpected object from lightkube: {type(obj).__name__}")


def _error(exc: Exception) -> KubeError:
    if isinstance(exc, ApiError):
        status = exc.status
        return api_error(int(status.code or 0), str(status.reason or ""), str(status.message or ""))
    if isinstance(exc, httpx2.HTTPStatusError):
        # An answer without a Status body (a proxy in between, say): still an answer, not an outage.
        response = exc.response
        return api_error(response.status_code, response.reason_phrase, response.text[:200])
    return KubeUnavailableError(f"Kubernetes API unreachable: {exc}")


def _not_found(exc: Exception) -> bool:
    error = _error(exc)
    return isinstance(error, KubeApiError) and error.code == 404


def _status_resource(kind: Kind) -> type[NamespacedResource]:
    status: type[NamespacedResource] = getattr(_NAMESPACED[kind], "Status")  # noqa: B009 - set by lightkube
    return status


class LightkubeApi:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def get(self, kind: Kind, namespace: str, name: str) -> KubeObject | None:
        try:
            if kind is Kind.NAMESPACE:
                obj: object = await self._client.get(Namespace, name)
            else:
                obj = await self._client.get(_NAMESPACED[kind], name, namespace=namespace)
        except httpx2.HTTPError as exc:
            if _not_found(exc):
                return None
            raise _error(exc) from exc
        return _to_dict(obj)

    async def list(self, kind: Kind) -> ObjectList:
        listing: ListAsyncIterable[Any]
        if kind is Kind.NAMESPACE:
            listing = self._client.list(Namespace)
        else:
            listing = self._client.list(_NAMESPACED[kind], namespace=ALL_NS)
        try:
            items = [_to_dict(obj) async for obj in listing]
            try:
                version = listing.resourceVersion
            except NotReadyError:
                version = ""
        except httpx2.HTTPError as exc:
            raise _error(exc) from exc
        return ObjectList(items, version)

    async def watch(self, kind: Kind, *, resource_version: str) -> AsyncGenerator[WatchEvent, None]:
        stream: AsyncIterable[tuple[str, Any]]
        if kind is Kind.NAMESPACE:
            stream = self._client.watch(Namespace, resource_version=resource_version or None)
        else:
            stream = self._client.watch(_NAMESPACED[kind], namespace=ALL_NS, resource_version=resource_version or None)
        try:
            async for event_type, obj in stream:
                yield WatchEvent(WatchEventType(event_type), _to_dict(obj))
        except httpx2.HTTPError as exc:
            raise _error(exc) from exc
        finally:
            # lightkube's watch is an async generator holding a streaming response: close it now, not whenever
            # the garbage collector gets to it.
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()

    async def apply(self, obj: KubeObject) -> KubeObject:
        kind = Kind(obj["kind"])
        meta = obj["metadata"]
        try:
            result = await self._client.patch(
                _NAMESPACED[kind],
                meta["name"],
                obj,
                namespace=meta.get("namespace"),
                patch_type=PatchType.APPLY,
                field_manager=FIELD_MANAGER,
                force=True,
            )
        except httpx2.HTTPError as exc:
            raise _error(exc) from exc
        return _to_dict(result)

    async def delete(self, kind: Kind, namespace: str, name: str) -> bool:
        try:
            if kind is Kind.NAMESPACE:
                await self._client.delete(Namespace, name)
            else:
                await self._client.delete(_NAMESPACED[kind], name, namespace=namespace)
        except httpx2.HTTPError as exc:
            if _not_found(exc):
                return False
            raise _error(exc) from exc
        return True

    async def patch_status(self, kind: Kind, namespace: str, name: str, patch: KubeObject) -> KubeObject | None:
        try:
            result = await self._client.patch(
                _status_resource(kind), name, patch, namespace=namespace, patch_type=PatchType.MERGE
            )
        except httpx2.HTTPError as exc:
            if _not_found(exc):
                return None
            raise _error(exc) from exc
        return _to_dict(result)

    async def review_token(self, token: str, audiences: Sequence[str]) -> KubeObject:
        review = TokenReview(spec=TokenReviewSpec(token=token, audiences=list(audiences)))
        try:
            result = await self._client.create(review)
        except httpx2.HTTPError as exc:
            raise _error(exc) from exc
        status: KubeObject = _to_dict(result).get("status") or {}
        return status


@asynccontextmanager
async def open_api(config: KubeConfig) -> AsyncIterator[LightkubeApi]:
    """A LightkubeApi whose connections close when the block ends."""
    client = AsyncClient(config=config, field_manager=FIELD_MANAGER)
    try:
        yield LightkubeApi(client)
    finally:
        with anyio.CancelScope(shield=True):
            await client.close()
