"""LightkubeApi, the real lightkube client, against a fake Kubernetes API server on a loopback port.

No Kubernetes API server can run here. `fake_api_server` is an aiohttp app that speaks the few REST paths the
reconciler uses (get, list, watch, server-side apply, status merge patch, delete) and keeps its objects in a
FakeKubeApi, which stands in for the API server. What is checked is the wire: the paths, the content types,
`fieldManager=meshgate` and `force=true` on every apply, Status bodies mapped to meshgate's errors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from meshgate.k8s.api import Kind, WatchEventType
from meshgate.k8s.client import LightkubeApi, load_config, open_api
from meshgate.k8s.errors import KubeApiError, KubeConfigError, KubeGoneError, KubeUnavailableError
from meshgate.k8s.reconciler import Reconciler, ReconcilerOptions
from meshgate.k8s.settings import ZoneSettings
from meshgate.k8s.testing import FakeKubeApi
from meshgate.resources import codec
from meshgate.rest.testing import serving
from meshgate.store.memory import MemoryStore
from tests.k8s_support import Seen, config_for, fake_api_server, validate_k8s
from tests.support.wait import eventually

NS = "gateways"


@pytest.fixture
def fake() -> FakeKubeApi:
    api = FakeKubeApi(validate=validate_k8s)
    api.create_namespace(NS, {"kuma.io/mesh": "default"})
    return api


@asynccontextmanager
async def client_for(fake: FakeKubeApi) -> AsyncIterator[tuple[LightkubeApi, Seen]]:
    seen = Seen()
    async with serving(fake_api_server(fake, seen)) as base_url, open_api(config_for(base_url)) as api:
        yield api, seen


def deployment(name: str = "d", replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
        },
    }


async def test_apply_is_server_side_apply_with_meshgate_as_field_manager(fake: FakeKubeApi) -> None:
    async with client_for(fake) as (api, seen):
        stored = await api.apply(deployment(replicas=2))
    assert stored["spec"]["replicas"] == 2
    assert stored["metadata"]["uid"]
    (method, path, query, content_type) = seen.requests[-1]
    assert (method, path) == ("PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/d")
    assert content_type == "application/apply-patch+yaml"
    assert query == {"fieldManager": "meshgate", "force": "true"}


async def test_get_returns_the_object_or_none(fake: FakeKubeApi) -> None:
    fake.create(deployment())
    async with client_for(fake) as (api, _):
        got = await api.get(Kind.DEPLOYMENT, NS, "d")
        assert got is not None
        assert got["metadata"]["name"] == "d"
        assert await api.get(Kind.DEPLOYMENT, NS, "missing") is None
        namespace = await api.get(Kind.NAMESPACE, "", NS)
        assert namespace is not None
        assert namespace["metadata"]["annotations"] == {"kuma.io/mesh": "default"}


async def test_list_and_watch_continue_from_the_list_version(fake: FakeKubeApi) -> None:
    fake.create(deployment("a"))
    async with client_for(fake) as (api, seen):
        listing = await api.list(Kind.DEPLOYMENT)
        assert [o["metadata"]["name"] for o in listing.items] == ["a"]
        assert listing.resource_version == fake.resource_version
        fake.create(deployment("b"))
        async with aclosing(api.watch(Kind.DEPLOYMENT, resource_version=listing.resource_version)) as events:
            with anyio.fail_after(10):
                event = await events.__anext__()
        assert (event.type, event.object["metadata"]["name"]) == (WatchEventType.ADDED, "b")
    watch_query = next(q for m, p, q, _ in seen.requests if q.get("watch") == "true")
    assert watch_query["resourceVersion"] == listing.resource_version


async def test_an_expired_watch_raises_gone(fake: FakeKubeApi) -> None:
    fake = FakeKubeApi(history=2)
    fake.create_namespace(NS)
    for i in range(5):
        fake.create(deployment(f"d{i}"))

    async def drain(api: LightkubeApi) -> None:
        async with aclosing(api.watch(Kind.DEPLOYMENT, resource_version="1")) as events:
            async for _ in events:
                pass

    async with client_for(fake) as (api, _):
        with pytest.raises(KubeGoneError), anyio.fail_after(10):
            await drain(api)


async def test_patch_status_is_a_merge_patch_on_the_status_subresource(fake: FakeKubeApi) -> None:
    fake.create(
        {
            "apiVersion": "kuma.io/v1alpha1",
            "kind": "MeshGatewayInstance",
            "metadata": {"name": "gw", "namespace": NS},
            "spec": {},
        }
    )
    patch = {
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Ready",
                    "message": "",
                    "lastTransitionTime": "2024-01-01T00:00:00Z",
                }
            ]
        }
    }
    async with client_for(fake) as (api, seen):
        result = await api.patch_status(Kind.MESH_GATEWAY_INSTANCE, NS, "gw", patch)
        assert result is not None
        assert result["status"] == patch["status"]
        assert await api.patch_status(Kind.MESH_GATEWAY_INSTANCE, NS, "missing", patch) is None
    method, path, _, content_type = seen.requests[0]
    assert (method, path, content_type) == (
        "PATCH",
        f"/apis/kuma.io/v1alpha1/namespaces/{NS}/meshgatewayinstances/gw/status",
        "application/merge-patch+json",
    )


async def test_delete_says_whether_there_was_something(fake: FakeKubeApi) -> None:
    fake.create(deployment())
    async with client_for(fake) as (api, _):
        assert await api.delete(Kind.DEPLOYMENT, NS, "d") is True
        assert await api.delete(Kind.DEPLOYMENT, NS, "d") is False


async def test_api_errors_become_kube_api_errors(fake: FakeKubeApi) -> None:
    bad = deployment()
    bad["metadata"]["namespace"] = "no-such-namespace"
    async with client_for(fake) as (api, _):
        with pytest.raises(KubeApiError) as caught:
            await api.apply(bad)
    assert caught.value.code == 404


async def test_an_unreachable_server_is_unavailable() -> None:
    async with open_api(config_for("http://127.0.0.1:1")) as api:
        with pytest.raises(KubeUnavailableError):
            await api.get(Kind.DEPLOYMENT, NS, "d")
        with pytest.raises(KubeUnavailableError):
            await api.list(Kind.DEPLOYMENT)


async def test_the_reconciler_works_through_lightkube(fake: FakeKubeApi) -> None:
    store = MemoryStore()
    await store.create(
        codec.load(
            {
                "type": "MeshGateway",
                "mesh": "default",
                "name": "edge",
                "selectors": [{"match": {"kuma.io/service": "gw_gateways_svc"}}],
                "conf": {"listeners": [{"port": 80, "protocol": "HTTP"}]},
            }
        )
    )
    fake.create(
        {
            "apiVersion": "kuma.io/v1alpha1",
            "kind": "MeshGatewayInstance",
            "metadata": {"name": "gw", "namespace": NS},
            "spec": {"serviceType": "ClusterIP"},
        }
    )
    options = ReconcilerOptions(workers=1, resync_interval=3600, retry_base=0.01, rewatch_delay=0.01)
    async with client_for(fake) as (api, _), anyio.create_task_group() as tg:
        await tg.start(Reconciler(api, store, ZoneSettings(), options=options).run)

        def ready() -> bool:
            obj = fake.object(Kind.MESH_GATEWAY_INSTANCE, NS, "gw") or {}
            return any(c["reason"] == "Ready" for c in obj.get("status", {}).get("conditions", []))

        await eventually(ready, what="Ready through lightkube")
        tg.cancel_scope.cancel()
    assert fake.object(Kind.SERVICE, NS, "gw") is not None


def test_load_config_without_cluster_or_kubeconfig_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError, match=r"not running in a cluster .* and KUBECONFIG is not set"):
        load_config({}, service_account=tmp_path)


def test_load_config_names_a_missing_kubeconfig(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError, match=r"KUBECONFIG .*missing\.yaml"):
        load_config({"KUBECONFIG": str(tmp_path / "missing.yaml")}, service_account=tmp_path)


def test_load_config_reads_kubeconfig(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "current-context": "ctx",
            }
        )
    )
    config = load_config({"KUBECONFIG": str(path)}, service_account=tmp_path)
    single = config.get()
    assert single is not None
    assert single.cluster.server == "https://127.0.0.1:6443"
