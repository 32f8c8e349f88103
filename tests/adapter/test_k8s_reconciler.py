"""The MeshGatewayInstance reconciler against FakeKubeApi, which stands in for the Kubernetes API server
(none can run here), and a real in-memory zone store.

The fake validates every object the reconciler applies with kubernetes-validate (strict), so a rendering that
a real API server would refuse fails here too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from meshgate.k8s.api import Kind
from meshgate.k8s.errors import KubeUnavailableError, NotControlledError
from meshgate.k8s.reconciler import Outcome, Reconciler, ReconcilerOptions
from meshgate.k8s.settings import ZoneSettings
from meshgate.k8s.testing import FakeKubeApi
from meshgate.store.memory import MemoryStore
from meshgate.testing import factory
from meshgate.testing.factory import resource
from tests.k8s_support import validate_k8s
from tests.support.wait import eventually

NS = "gateways"
KEY = (NS, "edge-gateway")
FAST = ReconcilerOptions(workers=2, resync_interval=3600, retry_base=0.01, retry_max=0.05, rewatch_delay=0.01)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def tick(self) -> None:
        self.now += timedelta(minutes=1)


def instance(name: str = "edge-gateway", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kuma.io/v1alpha1",
        "kind": "MeshGatewayInstance",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }


def gateway(*ports: int, name: str = "edge", service: str = "edge-gateway_gateways_svc") -> Any:
    listeners = [factory.listener(p, hostname=f"h{p}.example.com") for p in ports]
    return resource(factory.gateway(name, service=service, listeners=listeners))


def ready(api: FakeKubeApi, key: tuple[str, str] = KEY) -> dict[str, Any] | None:
    obj = api.object(Kind.MESH_GATEWAY_INSTANCE, *key)
    for condition in (obj or {}).get("status", {}).get("conditions", []):
        if condition["type"] == "Ready":
            return dict(condition)
    return None


def reason(api: FakeKubeApi, key: tuple[str, str] = KEY) -> str | None:
    condition = ready(api, key)
    return f"{condition['status']}/{condition['reason']}" if condition else None


@pytest.fixture
def api() -> FakeKubeApi:
    fake = FakeKubeApi(validate=validate_k8s)
    fake.create_namespace(NS)
    return fake


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def reconciler(api: FakeKubeApi, store: MemoryStore, clock: Clock) -> Reconciler:
    return Reconciler(api, store, ZoneSettings(), options=FAST, clock=clock)


@asynccontextmanager
async def running(reconciler: Reconciler) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        await tg.start(reconciler.run)
        yield
        tg.cancel_scope.cancel()


# -- one reconcile at a time ----------------------------------------------------------------------------------


async def test_applies_service_then_deployment_with_server_side_apply(
    api: FakeKubeApi, store: MemoryStore, reconciler: Reconciler
) -> None:
    await store.create(gateway(80, 8080))
    api.create(instance(replicas=2))
    result = await reconciler.reconcile(KEY)
    assert result.outcome is Outcome.APPLIED
    assert [(c.kind, c.name) for c in api.calls_of("apply")] == [
        (Kind.SERVICE, "edge-gateway"),
        (Kind.DEPLOYMENT, "edge-gateway"),
    ]
    service = api.object(Kind.SERVICE, *KEY)
    deployment = api.object(Kind.DEPLOYMENT, *KEY)
    assert service is not None
    assert deployment is not None
    assert [p["port"] for p in service["spec"]["ports"]] == [80, 8080]
    assert deployment["spec"]["replicas"] == 2
    uid = api.object(Kind.MESH_GATEWAY_INSTANCE, *KEY)["metadata"]["uid"]  # type: ignore[index]
    for obj in (service, deployment):
        (owner,) = obj["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
            "MeshGatewayInstance",
            "edge-gateway",
            uid,
            True,
        )
    # A new LoadBalancer Service has no address yet.
    assert reason(api) == "False/LoadBalancerAddressNotReady"


async def test_ready_follows_the_deployment_and_the_load_balancer(
    api: FakeKubeApi, store: MemoryStore, reconciler: Reconciler, clock: Clock
) -> None:
    await store.create(gateway(80))
    api.create(instance())
    await reconciler.reconcile(KEY)
    first = ready(api)
    assert first is not None
    assert first["lastTransitionTime"] == "2024-01-01T00:00:00Z"

    clock.tick()
    api.set_deployment_available(NS, "edge-gateway", "False")
    await reconciler.reconcile(KEY)
    assert reason(api) == "False/DeploymentNotAvailable"
    assert ready(api)["lastTransitionTime"] == "2024-01-01T00:00:00Z"  # type: ignore[index]  # still False

    clock.tick()
    api.set_deployment_available(NS, "edge-gateway", "Unknown")
    await reconciler.reconcile(KEY)
    assert reason(api) == "Unknown/DeploymentNotAvailable"
    assert ready(api)["lastTransitionTime"] == "2024-01-01T00:02:00Z"  # type: ignore[index]

    clock.tick()
    api.set_deployment_available(NS, "edge-gateway", "True")
    await reconciler.reconcile(KEY)
    assert reason(api) == "False/LoadBalancerAddressNotReady"

    clock.tick()
    api.set_load_balancer_ingress(NS, "edge-gateway", [{"ip": "203.0.113.7"}])
    await reconciler.reconcile(KEY)
    assert reason(api) == "True/Ready"
    status = api.object(Kind.MESH_GATEWAY_INSTANCE, *KEY)["status"]  # type: ignore[index]
    assert status["loadBalancer"] == {"ingress": [{"ip": "203.0.113.7"}]}
    assert ready(api)["lastTransitionTime"] == "2024-01-01T00:04:00Z"  # type: ignore[index]


async def test_a_cluster_ip_service_is_ready_once_it_has_an_address(
    api: FakeKubeApi, store: MemoryStore, reconciler: Reconciler
) -> None:
    await store.create(gateway(80))
    api.create(instance(serviceType="ClusterIP"))
    await reconciler.reconcile(KEY)
    # The fake allocates a cluster IP on create, as the API server does.
    assert reason(api) == "True/Ready"
    assert api.object(Kind.MESH_GATEWAY_INSTANCE, *KEY)["status"]["loadBalancer"] == {}  # type: ignore[index]


async def test_reconciling_again_changes_nothing(api: FakeKubeApi, store: MemoryStore, reconciler: Reconciler) -> None:
    await store.create(gateway(80))
    api.create(instance())
    await reconciler.reconcile(KEY)
    version = api.resource_version
    await reconciler.reconcile(KEY)
    assert api.resource_version == version
    assert len(api.calls_of("patch_status")) == 1


async def test_no_gateway_matched_creates_nothing(api: FakeKubeApi, store: MemoryStore, reconciler: Reconciler) -> None:
    await store.create(gateway(80, service="someone-else"))
    api.create(instance())
    result = await reconciler.reconcile(KEY)
    assert result.outcome is Outcome.NO_GATEWAY
    assert api.calls_of("apply") == []
    assert api.object(Kind.SERVICE, *KEY) is None
    assert reason(api) == "False/NoGatewayMatched"
    assert ready(api)["message"] == "No Gateway matched by tags in mesh: 'default'"  # type: ignore[index]


async def test_a_gateway_that_goes_away_leaves_the_service_as_it_was(
    api: FakeKubeApi, store: MemoryStore, reconciler: Reconciler
) -> None:
    """Kuma keeps the Service (a MeshGateway renamed for a moment must not drop traffic) and keeps
    reconciling the Deployment while the Service is there."""
    edge = await store.create(gateway(80))
    api.create(instance())
    await reconciler.reconcile(KEY)
    service_before = api.object(Kind.SERVICE, *KEY)
    await store.delete(edge.key)
    api.update(instance(replicas=3))
    result = await reconciler.reconcile(KEY)
    assert result.outcome is Outcome.NO_GATEWAY
    assert api.object(Kind.SERVICE, *KEY) == service_before
    assert api.object(Kind.DEPLOYMENT, *KEY)["spec"]["replicas"] == 3  # type: ignore[index]
    assert reason(api) == "False/NoGatewayMatched"


async def test_the_instance_in_another_mesh_sees_only_that_mesh(
    api: FakeKubeApi, store: MemoryStore, reconciler: Reconciler
) -> None:
    await store.create(gateway(80))
    api.remove(Kind.NAMESPACE, "", NS)
    api.create_namespace(NS, {"kuma.io/mesh": "payments"})
    api.create(instance())
    assert (await reconciler.reconcile(KEY)).outcome is Outcome.NO_GATEWAY
    assert ready(api)["message"] == "No Gateway matched by tags in mesh: 'payments'"  # type: ignore[index]


async def test_an_invalid_instance_is_reported_and_nothing_applied(
    api: FakeKubeApi, store: MemoryStore, reconciler: Reconciler
) -> None:
    await store.create(gateway(80))
    api.create(instance(tags={"version": "not/valid"}))
    result = await reconciler.reconcile(KEY)
    assert result.outcome is Outcome.INVALID
    assert api.calls_of("apply") == []
    condition = ready(api)
    assert condition is not None
    assert condition["reason"] == "InvalidInstance"
    assert 'spec.tags["version"]' in condition["message"]


async def test_an_object_controlled_by_someone_else_is_never_taken_over(
    api: FakeKubeApi, store: MemoryStore, reconciler: Reconciler
) -> None:
    await store.create(gateway(80))
    api.create(instance())
    foreign = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "edge-gateway", "namespace": NS}, "spec": {}}
    api.create(foreign)
    with pytest.raises(NotControlledError):
        await reconciler.reconcile(KEY)
    assert api.calls_of("apply") == []
    assert api.object(Kind.SERVICE, *KEY)["spec"] == {}  # type: ignore[index]


async def test_a_deleted_instance_takes_its_objects_with_it(
    api: FakeKubeApi, store: MemoryStore, reconciler: Reconciler
) -> None:
    """The fake runs no garbage collector here: the reconciler deletes explicitly."""
    await store.create(gateway(80))
    api.create(instance())
    await reconciler.reconcile(KEY)
    api.remove(Kind.MESH_GATEWAY_INSTANCE, *KEY)
    assert (await reconciler.reconcile(KEY)).outcome is Outcome.DELETED
    assert api.object(Kind.SERVICE, *KEY) is None
    assert api.object(Kind.DEPLOYMENT, *KEY) is None
    assert {(c.kind, c.name) for c in api.calls_of("delete")} == {
        (Kind.SERVICE, "edge-gateway"),
        (Kind.DEPLOYMENT, "edge-gateway"),
    }


async def test_deleting_leaves_objects_it_does_not_control(
    api: FakeKubeApi, store: MemoryStore, reconciler: Reconciler
) -> None:
    api.create(
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "edge-gateway", "namespace": NS}, "spec": {}}
    )
    assert (await reconciler.reconcile(KEY)).outcome is Outcome.DELETED
    assert api.object(Kind.SERVICE, *KEY) is not None
    assert api.calls_of("delete") == []


# -- the running reconciler -----------------------------------------------------------------------------------


async def test_watches_drive_create_update_ready_and_delete(
    api: FakeKubeApi, store: MemoryStore, reconciler: Reconciler
) -> None:
    async with running(reconciler):
        api.create(instance())
        await eventually(lambda: reason(api) == "False/NoGatewayMatched", what="NoGatewayMatched")

        await store.create(gateway(80))  # a zone store change re-reconciles every instance
        await eventually(lambda: api.object(Kind.DEPLOYMENT, *KEY) is not None, what="deployment")

        api.set_deployment_available(NS, "edge-gateway", "True")  # a Deployment event: Kuma's Owns()
        api.set_load_balancer_ingress(NS, "edge-gateway", [{"hostname": "lb.example.com"}])
        await eventually(lambda: reason(api) == "True/Ready", what="Ready")

        api.update(instance(replicas=4))
        await eventually(lambda: api.object(Kind.DEPLOYMENT, *KEY)["spec"]["replicas"] == 4, what="replicas")  # type: ignore[index]

        edge = await store.get(gateway(80).key)
        await store.update(gateway(80, 443).with_meta(version=edge.meta.version))
        await eventually(
            lambda: [p["port"] for p in api.object(Kind.SERVICE, *KEY)["spec"]["ports"]] == [80, 443],  # type: ignore[index]
            what="new port",
        )

        api.remove(Kind.MESH_GATEWAY_INSTANCE, *KEY)
        await eventually(
            lambda: api.object(Kind.DEPLOYMENT, *KEY) is None and api.object(Kind.SERVICE, *KEY) is None, what="deleted"
        )


async def test_failed_calls_are_retried_with_backoff(
    api: FakeKubeApi, store: MemoryStore, reconciler: Reconciler
) -> None:
    await store.create(gateway(80))
    api.fail("apply", KubeUnavailableError("connection refused"), times=3)
    async with running(reconciler):
        api.create(instance())
        await eventually(lambda: api.object(Kind.DEPLOYMENT, *KEY) is not None, what="deployment after retries")
    assert len(api.calls_of("apply", Kind.SERVICE)) >= 4


async def test_a_lost_watch_is_listed_again_and_nothing_is_missed(
    api: FakeKubeApi, store: MemoryStore, reconciler: Reconciler
) -> None:
    await store.create(gateway(80))
    async with running(reconciler):
        await eventually(lambda: len(api.calls_of("watch", Kind.MESH_GATEWAY_INSTANCE)) == 1, what="first watch")
        api.expire_watches()
        api.create(instance())
        await eventually(lambda: api.object(Kind.DEPLOYMENT, *KEY) is not None, what="deployment")
        assert len(api.calls_of("list", Kind.MESH_GATEWAY_INSTANCE)) >= 2


async def test_a_watcher_that_falls_behind_is_cut_off_and_recovers(store: MemoryStore) -> None:
    api = FakeKubeApi(validate=validate_k8s, watch_buffer=2)
    api.create_namespace(NS)
    await store.create(gateway(80, service="shared"))
    reconciler = Reconciler(api, store, ZoneSettings(), options=FAST)
    async with running(reconciler):
        await eventually(lambda: len(api.calls_of("watch", Kind.MESH_GATEWAY_INSTANCE)) == 1, what="first watch")
        # More events than the watch buffer holds, with no await in between for the watcher to drain.
        for i in range(10):
            api.create(instance(f"gw-{i}", tags={"kuma.io/service": "shared"}))
        names = [f"gw-{i}" for i in range(10)]
        await eventually(
            lambda: all(api.object(Kind.DEPLOYMENT, NS, name) is not None for name in names), what="all deployments"
        )
        assert len(api.calls_of("list", Kind.MESH_GATEWAY_INSTANCE)) >= 2


async def test_an_instance_deleted_while_nobody_watched_is_cleaned_up_by_the_relist(
    api: FakeKubeApi, store: MemoryStore, reconciler: Reconciler
) -> None:
    await store.create(gateway(80))
    api.create(instance())
    await reconciler.reconcile(KEY)  # known to the reconciler, objects created
    api.fail("watch", KubeUnavailableError("connection refused"), times=1)
    api.remove(Kind.MESH_GATEWAY_INSTANCE, *KEY)  # before any watch starts: no DELETED event is ever seen
    async with running(reconciler):
        await eventually(lambda: api.object(Kind.DEPLOYMENT, *KEY) is None, what="deployment deleted")
        await eventually(lambda: api.object(Kind.SERVICE, *KEY) is None, what="service deleted")


async def test_with_the_garbage_collector_owner_references_cascade(store: MemoryStore) -> None:
    api = FakeKubeApi(validate=validate_k8s, garbage_collect=True)
    api.create_namespace(NS)
    await store.create(gateway(80))
    api.create(instance())
    reconciler = Reconciler(api, store, ZoneSettings(), options=FAST)
    await reconciler.reconcile(KEY)
    api.remove(Kind.MESH_GATEWAY_INSTANCE, *KEY)
    assert api.object(Kind.DEPLOYMENT, *KEY) is None
    assert (await reconciler.reconcile(KEY)).outcome is Outcome.DELETED
    assert api.calls_of("delete") == []  # nothing left to delete explicitly
