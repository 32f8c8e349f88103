"""Token keys and revocations kept in a real store (memory and sqlite): creation races, rotation with a
grace period, sweeping, revocation lists in Kuma's format, and the admin endpoints over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest
from google.protobuf.wrappers_pb2 import BytesValue

from meshgate.api.system.v1alpha1 import secret_pb2
from meshgate.auth.jwt import TokenError
from meshgate.resources import registry
from meshgate.resources.model import ResourceKey
from meshgate.rest.app import create_api_app
from meshgate.rest.testing import serving
from meshgate.store.factory import open_store
from meshgate.store.protocol import ResourceStore
from meshgate.tokens import DataplaneTokens, SigningKeyMissing, UserTokens, ZoneTokens, token_admin_routes
from meshgate.tokens.services import REVOCATIONS_KIND, USER_KEY_KIND, ZONE_KEY_KIND


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ResourceStore]:
    s = await open_store(request.param, data_dir=tmp_path)
    yield s
    await s.close()


def test_key_and_revocation_kinds_are_internal_never_synced_nor_served() -> None:
    names = {d.name for d in registry.KINDS}
    assert not {ZONE_KEY_KIND, USER_KEY_KIND, REVOCATIONS_KIND} & names


async def test_first_key_is_created_once_even_when_replicas_race(store: ResourceStore) -> None:
    replicas = [ZoneTokens(store) for _ in range(4)]
    kids: list[str] = []

    async def first_need(r: ZoneTokens) -> None:
        kids.append((await r.keys.signer())[0])

    async with anyio.create_task_group() as tg:
        for r in replicas:
            tg.start_soon(first_need, r)
    assert kids == ["1"] * 4
    stored = await store.get(ResourceKey(ZONE_KEY_KIND, "", "zone-token-signing-key-1"))
    assert isinstance(stored.spec, BytesValue)
    # Every replica signs with the one stored key: a token from one verifies on another.
    token = await replicas[0].issue("west", ["cp"], 60)
    assert (await replicas[3].verify(token)).zone == "west"


async def test_rotation_keeps_old_tokens_valid_for_the_grace_period_then_refuses_and_sweeps(
    store: ResourceStore,
) -> None:
    clock = Clock()
    tokens = UserTokens(store, clock)
    old = await tokens.issue("alice", ["g"], 7 * 86400)
    assert await tokens.keys.rotate(3600) == "2"
    new = await tokens.issue("bob", ["g"], 7 * 86400)
    assert new.split(".")[0] != old.split(".")[0]  # the header names kid 2
    assert (await tokens.verify(old)).name == "alice"  # within the grace period
    assert [(k.kid, k.retire_at) for k in tokens.keys.describe()] == [("1", int(clock.now) + 3600), ("2", None)]
    clock.now += 3600
    with pytest.raises(TokenError) as err:
        await tokens.verify(old)
    assert err.value.code == "bad_signature"
    assert (await tokens.verify(new)).name == "bob"
    assert await tokens.keys.sweep() == ["user-token-signing-key-1"]
    assert [k.kid for k in tokens.keys.describe()] == ["2"]


async def test_a_revoked_token_is_refused_at_once_and_by_other_replicas(store: ResourceStore) -> None:
    a, b = ZoneTokens(store), ZoneTokens(store)
    token = await a.issue("west", ["cp"], 3600)
    other = await a.issue("west", ["cp"], 3600)
    jti = (await b.verify(token)).jti
    assert await a.revocations.revoke(jti) is True
    assert await a.revocations.revoke(jti) is False  # idempotent
    with pytest.raises(TokenError) as err:
        await a.verify(token)
    assert err.value.code == "revoked"
    await b.refresh(force=True)  # another replica sees it on its next refresh (at most a second)
    with pytest.raises(TokenError):
        b.verify_cached(token)
    assert (await b.verify(other)).zone == "west"
    stored = await store.get(ResourceKey(REVOCATIONS_KIND, "", "zone-token-revocations"))
    assert isinstance(stored.spec, BytesValue)
    assert stored.spec.value.decode() == jti  # Kuma's format: ids separated by commas


async def test_dataplane_keys_and_revocations_are_mesh_secrets_a_zone_reads_but_never_creates(
    store: ResourceStore,
) -> None:
    zone_side = DataplaneTokens(store, create_keys=False)
    with pytest.raises(SigningKeyMissing, match="mesh 'default'"):
        await zone_side.issue("default", name="edge-1", valid_for=60)
    global_side = DataplaneTokens(store, create_keys=True)
    token = await global_side.issue("default", name="edge-1", proxy_type="gateway", valid_for=60)
    key = await store.get(ResourceKey("Secret", "default", "dataplane-token-signing-key-default-1"))
    assert isinstance(key.spec, secret_pb2.Secret)
    await zone_side.mesh("default").refresh(force=True)  # the zone re-reads its copy at most a second later
    claims = await zone_side.verify(token, mesh="default", name="edge-1", tags={}, proxy_type="gateway")
    assert claims.name == "edge-1"
    with pytest.raises(TokenError) as other_mesh:
        await zone_side.verify(token, mesh="other", name="edge-1", tags={}, proxy_type="gateway")
    assert other_mesh.value.code in ("bad_signature", "wrong_identity")
    await global_side.mesh("default").revocations.revoke(claims.jti)
    await zone_side.mesh("default").refresh(force=True)
    with pytest.raises(TokenError, match="revoked"):
        await zone_side.verify(token, mesh="default", name="edge-1", tags={}, proxy_type="gateway")
    revoked = await store.get(ResourceKey("Secret", "default", "dataplane-token-revocations-default"))
    assert isinstance(revoked.spec, secret_pb2.Secret)


async def test_admin_endpoints_revoke_and_rotate_and_name_bad_fields(store: ResourceStore) -> None:
    zone, user = ZoneTokens(store), UserTokens(store)
    await user.issue("alice", [], 60)  # key 1 exists: rotation makes key 2
    calls: list[str] = []
    routes = token_admin_routes(zone=zone, user=user, on_revoked=[lambda: calls.append("recheck")])
    app = create_api_app(store, role="global", extra_routes=routes)
    token = await zone.issue("west", ["cp"], 3600)
    jti = (await zone.verify(token)).jti
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as http:
        r = await http.post("/tokens/revocations", json={"type": "zone", "id": jti})
        assert r.status_code == 200, r.text
        assert r.json()["revoked"] is True
        assert calls == ["recheck"]
        listed = await http.get("/tokens/revocations", params={"type": "zone"})
        assert listed.json()["items"] == [jti]
        bad = await http.post("/tokens/revocations", json={"type": "nope", "id": "a,b"})
        assert bad.status_code == 400
        fields = {v["field"] for v in bad.json()["invalid_parameters"]}
        assert fields == {"type"} or fields == {"type", "id"}
        bad_id = await http.post("/tokens/revocations", json={"type": "zone", "id": "a,b"})
        assert bad_id.status_code == 400
        assert bad_id.json()["invalid_parameters"][0]["field"] == "id"
        rotated = await http.post("/tokens/signing-keys/rotate", json={"type": "user", "gracePeriod": "1h"})
        assert rotated.status_code == 200, rotated.text
        assert rotated.json()["keyId"] == "2"
        keys = (await http.get("/tokens/signing-keys", params={"type": "user"})).json()["items"]
        assert [k["keyId"] for k in keys] == ["1", "2"]
        assert all(set(k) == {"keyId", "name", "retireAt"} for k in keys)  # never key material
        bad_grace = await http.post("/tokens/signing-keys/rotate", json={"type": "user", "gracePeriod": "soon"})
        assert bad_grace.status_code == 400
        assert bad_grace.json()["invalid_parameters"][0]["field"] == "gracePeriod"
    with pytest.raises(TokenError, match="revoked"):
        await zone.verify(token)
