"""Kuma 2.7's policy kinds on the REST API: Kuma's paths, written on the global, 405 on a zone, in OpenAPI.

Each kind is one of `factory.POLICY_BUILDERS`; its path segment is Kuma's (`ws.name`, plural).
"""

from __future__ import annotations

import pytest

from meshgate.resources import registry
from meshgate.store.memory import MemoryStore
from meshgate.testing import factory
from tests.rest_support import api_client

# Kuma 2.7's REST path segments (api/mesh/v1alpha1/*.proto, `ws.name` and `ws.plural`).
KUMA_PATHS = {
    "Timeout": "timeouts",
    "Retry": "retries",
    "CircuitBreaker": "circuit-breakers",
    "HealthCheck": "health-checks",
    "RateLimit": "rate-limits",
    "FaultInjection": "fault-injections",
    "TrafficPermission": "traffic-permissions",
    "TrafficLog": "traffic-logs",
    "TrafficTrace": "traffic-traces",
    "ProxyTemplate": "proxytemplates",
    "ExternalService": "external-services",
    "TrafficRoute": "traffic-routes",
    "VirtualOutbound": "virtual-outbounds",
}


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def test_every_policy_kind_is_on_kumas_path_and_syncs_down_only() -> None:
    assert set(KUMA_PATHS) == set(factory.POLICY_BUILDERS)
    for kind, plural in KUMA_PATHS.items():
        descriptor = registry.get(kind)
        assert descriptor.plural == plural
        assert registry.lookup(plural) is descriptor
        assert descriptor in registry.kinds_sent_to_zone()
        assert descriptor not in registry.kinds_sent_to_global()
        assert (descriptor.writable_on_global, descriptor.writable_on_zone) == (True, False)


@pytest.mark.parametrize("kind", sorted(KUMA_PATHS))
async def test_crud_on_the_global(store: MemoryStore, kind: str) -> None:
    doc = factory.POLICY_BUILDERS[kind]()
    path = f"/meshes/default/{KUMA_PATHS[kind]}/{doc['name']}"
    async with api_client(store, role="global") as http:
        assert (await http.put("/meshes/default", json=factory.mesh())).status_code == 201
        assert (await http.put(path, json=doc)).status_code == 201
        got = (await http.get(path)).json()
        assert {k: v for k, v in got.items() if k not in ("creationTime", "modificationTime")} == doc
        listed = (await http.get(f"/meshes/default/{KUMA_PATHS[kind]}")).json()
        assert [item["name"] for item in listed["items"]] == [doc["name"]]
        assert (await http.put(path, json=doc)).status_code == 200
        assert (await http.delete(path)).status_code == 200
        assert (await http.get(path)).status_code == 404


@pytest.mark.parametrize("kind", sorted(KUMA_PATHS))
async def test_a_zone_answers_405_to_a_write(store: MemoryStore, kind: str) -> None:
    doc = factory.POLICY_BUILDERS[kind]()
    async with api_client(store, role="zone") as http:
        response = await http.put(f"/meshes/default/{KUMA_PATHS[kind]}/{doc['name']}", json=doc)
    assert response.status_code == 405, response.text


async def test_a_global_refuses_an_invalid_policy_with_kumas_fields(store: MemoryStore) -> None:
    doc = factory.timeout(conf={"tcp": {}})
    async with api_client(store, role="global") as http:
        await http.put("/meshes/default", json=factory.mesh())
        response = await http.put("/meshes/default/timeouts/t", json={**doc, "name": "t"})
    assert response.status_code == 400
    assert response.json()["invalid_parameters"] == [
        {"field": "conf.tcp", "reason": "at least one timeout in section has to be defined"}
    ]


async def test_openapi_lists_the_policy_paths(store: MemoryStore) -> None:
    async with api_client(store, role="global") as http:
        paths = (await http.get("/openapi.json")).json()["paths"]
    for plural in KUMA_PATHS.values():
        assert set(paths[f"/meshes/{{mesh}}/{plural}/{{name}}"]) >= {"get", "put", "delete"}
        assert "get" in paths[f"/meshes/{{mesh}}/{plural}"]


# Durations as Kuma's docs write them (Go's time.ParseDuration, which Kuma's jsonpb reader uses), and as Kuma's
# API answers them (jsonpb's output: seconds with an "s" suffix).
GO_DURATIONS = {
    "Timeout": (
        factory.timeout(
            "docs",
            conf={
                "connectTimeout": "5s",
                "tcp": {"idleTimeout": "1h"},
                "http": {
                    "requestTimeout": "15s",
                    "idleTimeout": "1h",
                    "streamIdleTimeout": "30m",
                    "maxStreamDuration": "0s",
                },
            },
        ),
        {
            "connectTimeout": "5s",
            "tcp": {"idleTimeout": "3600s"},
            "http": {
                "requestTimeout": "15s",
                "idleTimeout": "3600s",
                "streamIdleTimeout": "1800s",
                "maxStreamDuration": "0s",
            },
        },
    ),
    "Retry": (
        factory.retry(
            "docs",
            conf={
                "http": {
                    "numRetries": 5,
                    "perTryTimeout": "200ms",
                    "backOff": {"baseInterval": "25ms", "maxInterval": "1s"},
                }
            },
        ),
        {
            "http": {
                "numRetries": 5,
                "perTryTimeout": "0.200s",
                "backOff": {"baseInterval": "0.025s", "maxInterval": "1s"},
            }
        },
    ),
    "HealthCheck": (
        factory.health_check(
            "docs", conf={"interval": "1m30s", "timeout": "500ms", "unhealthyThreshold": 3, "healthyThreshold": 1}
        ),
        {"interval": "90s", "timeout": "0.500s", "unhealthyThreshold": 3, "healthyThreshold": 1},
    ),
    "RateLimit": (
        factory.rate_limit("docs", conf={"http": {"requests": 5, "interval": "1m"}}),
        {"http": {"requests": 5, "interval": "60s"}},
    ),
}


@pytest.mark.parametrize("kind", sorted(GO_DURATIONS))
async def test_go_durations_are_accepted_and_answered_in_seconds(store: MemoryStore, kind: str) -> None:
    doc, answered = GO_DURATIONS[kind]
    path = f"/meshes/default/{KUMA_PATHS[kind]}/{doc['name']}"
    async with api_client(store, role="global") as http:
        assert (await http.put("/meshes/default", json=factory.mesh())).status_code == 201
        response = await http.put(path, json=doc)
        assert response.status_code == 201, response.text
        got = (await http.get(path)).json()
        assert got["conf"] == answered
        # What a GET answers is accepted back unchanged (kumactl get | kumactl apply).
        assert (await http.put(path, json=got)).status_code == 200
        assert (await http.get(path)).json()["conf"] == answered


async def test_a_malformed_duration_is_refused_with_its_field(store: MemoryStore) -> None:
    doc = factory.timeout("t", conf={"connectTimeout": "5", "http": {"idleTimeout": "1d"}})
    async with api_client(store, role="global") as http:
        await http.put("/meshes/default", json=factory.mesh())
        response = await http.put("/meshes/default/timeouts/t", json=doc)
    assert response.status_code == 400
    example = 'must be a duration such as "10s", "1h" or "200ms"'
    assert response.json()["invalid_parameters"] == [
        {"field": "conf.connectTimeout", "reason": f'{example} (time: missing unit in duration "5")'},
        {"field": "conf.http.idleTimeout", "reason": f'{example} (time: unknown unit "d" in duration "1d")'},
    ]
