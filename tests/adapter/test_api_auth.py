"""API authentication and access over real HTTP on loopback: anonymous, read-only and admin users against an
in-process global-like app with `localhost_is_admin=False` (so being on loopback grants nothing), the demonstrated
attacks refused, private keys withheld from everyone, revocation and rotation taking effect, and the admin token
file."""

from __future__ import annotations

import base64
import os
import socket
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from global_cp.tokens import token_route
from meshgate.auth.jwt import generate_key_pem, unverified_payload
from meshgate.resources import codec
from meshgate.resources.model import Resource, ResourceKey
from meshgate.rest.app import create_api_app
from meshgate.rest.authn import ApiAuth
from meshgate.rest.config_dump import zone_config_dump_route
from meshgate.rest.testing import serving
from meshgate.store.factory import open_store
from meshgate.store.protocol import ResourceStore
from meshgate.testing.factory import resource, secret
from meshgate.tokens import DataplaneTokens, UserTokens, ZoneTokens, token_admin_routes, user_token_route
from meshgate.tokens.admin_token import ensure_admin_token
from zone_cp.envoy_admin import EnvoyAdminDumper

CA_KEY = "default.ca-builtin-key-ca-1"
CA_CERT = "default.ca-builtin-cert-ca-1"
DP_KEY = "dataplane-token-signing-key-default-1"
BYO_KEY = "my-own-ca-key"  # a user's own key under a name we do not know: caught by its PEM block
PASSWORD = "db-password"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Api:
    url: str
    store: ResourceStore
    users: UserTokens
    clock: Clock

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10)


def _secret(name: str, data: bytes, mesh: str = "default") -> Resource:
    return resource(secret(name, data, mesh), check=False)


@asynccontextmanager
async def global_api(
    tmp_path: Path, *, localhost_is_admin: bool = False, host: str = "127.0.0.1"
) -> AsyncIterator[Api]:
    store = await open_store("sqlite", data_dir=tmp_path)
    clock = Clock()
    users = UserTokens(store, clock=clock)
    try:
        await store.create(codec.load({"type": "Mesh", "name": "default"}))
        for name, data in [
            (CA_KEY, generate_key_pem()),
            (CA_CERT, b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"),
            (DP_KEY, generate_key_pem()),
            (BYO_KEY, generate_key_pem()),
            (PASSWORD, b"hunter2"),
        ]:
            await store.create(_secret(name, data))
        app = create_api_app(
            store,
            role="global",
            auth=ApiAuth(users, localhost_is_admin=localhost_is_admin),
            extra_routes=[
                token_route(ZoneTokens(store)),
                user_token_route(users),
                *token_admin_routes(
                    zone=ZoneTokens(store), user=users, dataplane=DataplaneTokens(store, create_keys=True)
                ),
                zone_config_dump_route(EnvoyAdminDumper(store, lambda mesh, name: None)),
            ],
        )
        async with serving(app, host=host) as url:
            yield Api(url, store, users, clock)
    finally:
        await store.close()


async def _exists(store: ResourceStore, key: ResourceKey) -> bool:
    return key in {
        ResourceKey(r.kind, r.meta.mesh, r.meta.name) for r in (await store.list(key.kind, key.mesh or None)).items
    }


ANONYMOUS_REFUSED = [
    ("GET", "/meshes/default/secrets/" + CA_KEY, None),
    ("DELETE", "/meshes/default", None),
    ("POST", "/tokens/zone", {"zone": "zone-1"}),
    ("POST", "/tokens/user", {"name": "me", "groups": ["mesh-system:admin"], "validFor": "24h"}),
    ("PUT", "/meshes/evil", {"type": "Mesh", "name": "evil"}),
    ("POST", "/_apply", {"items": [{"type": "Mesh", "name": "evil"}]}),
    ("GET", "/meshes", None),
    ("GET", "/meshes/default", None),
    ("GET", "/secrets", None),
    ("GET", "/_resources", None),
    ("GET", "/tokens/signing-keys?type=user", None),
    ("POST", "/tokens/signing-keys/rotate", {"type": "user"}),
    ("GET", "/meshes/default/dataplanes/dp-1/xds", None),
    ("GET", "/no/such/route", None),
]


async def test_anonymous_is_refused_every_read_and_write_including_the_demonstrated_attacks(tmp_path: Path) -> None:
    """No token (and loopback grants nothing here): 401 with Kuma's body and a WWW-Authenticate challenge on
    everything but `/` and `/openapi.json`; the mesh survives the DELETE and no zone token is minted."""
    async with global_api(tmp_path) as api, api.client() as http:
        for method, path, body in ANONYMOUS_REFUSED:
            r = await http.request(method, path, json=body)
            assert r.status_code == 401, (method, path, r.text)
            doc = r.json()
            assert (doc["type"], doc["title"]) == ("/std-errors", "Unauthenticated"), doc
            assert "Authorization: Bearer" in doc["detail"]
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
            assert "BEGIN" not in r.text
            assert "eyJ" not in r.text
        assert await _exists(api.store, ResourceKey("Mesh", "", "default"))
        assert not await _exists(api.store, ResourceKey("Mesh", "", "evil"))
        assert (await http.get("/")).status_code == 200
        assert (await http.get("/openapi.json")).status_code == 200


async def test_a_bad_token_is_401_naming_why_never_anonymous_nor_500(tmp_path: Path) -> None:
    """Malformed, signed by another control plane, expired, or not a Bearer header: each 401 says which."""
    async with global_api(tmp_path) as api:
        other = await open_store("memory", data_dir=tmp_path)
        try:
            foreign = await UserTokens(other).issue("admin", ["mesh-system:admin"], 3600)
        finally:
            await other.close()
        short = await api.users.issue("alice", ["users"], 60)
        api.clock.now += 120
        cases = [
            ("not-a-jwt", "not a JWT"),
            (foreign, "signature does not match"),
            (short, "expired"),
        ]
        for token, reason in cases:
            async with api.client(token) as http:
                r = await http.get("/meshes")
            assert r.status_code == 401, r.text
            assert r.json()["title"] == "Invalid authentication data"
            assert reason in r.json()["detail"]
        async with api.client() as http:
            r = await http.get("/meshes", headers={"Authorization": "Basic YWRtaW46YWRtaW4="})
        assert r.status_code == 401
        assert "Bearer <token>" in r.json()["detail"]


async def test_a_read_only_user_reads_resources_but_not_secrets_dumps_tokens_or_writes(tmp_path: Path) -> None:
    """A token in group `users`: 200 on resource and index GETs; 403 naming the user, the groups and what is
    missing on PUT/DELETE, Secret list and get, every /tokens endpoint and the config dump."""
    async with global_api(tmp_path) as api:
        token = await api.users.issue("alice", ["users"], 3600)
        async with api.client(token) as http:
            for path in ("/meshes", "/meshes/default", "/meshgateways", "/_resources", "/"):
                assert (await http.get(path)).status_code == 200, path
            refused = [
                ("PUT", "/meshes/default", {"type": "Mesh", "name": "default"}),
                ("POST", "/_apply", {"items": [{"type": "Mesh", "name": "evil"}]}),
                ("DELETE", "/meshes/default", None),
                ("GET", "/meshes/default/secrets", None),
                ("GET", f"/meshes/default/secrets/{PASSWORD}", None),
                ("GET", "/secrets", None),
                ("POST", "/tokens/zone", {"zone": "zone-1"}),
                ("POST", "/tokens/user", {"name": "alice", "groups": ["mesh-system:admin"], "validFor": "1h"}),
                ("POST", "/tokens/revocations", {"type": "user", "id": "x"}),
                ("GET", "/tokens/revocations?type=user", None),
                ("POST", "/tokens/signing-keys/rotate", {"type": "user"}),
                ("GET", "/tokens/signing-keys?type=user", None),
                ("GET", "/meshes/default/dataplanes/dp-1/xds", None),
            ]
            for method, path, body in refused:
                r = await http.request(method, path, json=body)
                assert r.status_code == 403, (method, path, r.text)
                detail = r.json()["detail"]
                assert r.json()["title"] == "Access Denied"
                assert 'the user "alice" in groups [users, mesh-system:authenticated] may not' in detail
                assert "ask an admin for a token in group mesh-system:admin" in detail
                assert "hunter2" not in r.text
                assert "aHVudGVyMg" not in r.text
        assert await _exists(api.store, ResourceKey("Mesh", "", "default"))


async def test_admin_does_everything_but_read_a_private_key(tmp_path: Path) -> None:
    """An admin token writes, reads ordinary Secrets, issues tokens; GET of the CA key, the data plane token
    signing key or a Secret holding a PEM private key is 403 for the admin too, and lists keep those
    Secrets but never their data."""
    async with global_api(tmp_path) as api:
        admin = await api.users.issue("root", ["mesh-system:admin"], 3600)
        async with api.client(admin) as http:
            assert (await http.put("/meshes/other", json={"type": "Mesh", "name": "other"})).status_code == 201
            password = (await http.get(f"/meshes/default/secrets/{PASSWORD}")).json()
            assert base64.b64decode(password["data"]) == b"hunter2"
            assert (await http.get(f"/meshes/default/secrets/{CA_CERT}")).status_code == 200
            for name in (CA_KEY, DP_KEY, BYO_KEY):
                r = await http.get(f"/meshes/default/secrets/{name}")
                assert r.status_code == 403, (name, r.text)
                assert "never served" in r.json()["detail"]
                assert "PRIVATE" not in r.text
            for path in ("/meshes/default/secrets", "/secrets", "/meshes/default/secrets?zone=nowhere&size=100"):
                r = await http.get(path)
                assert r.status_code == 200, path
                assert "PRIVATE KEY" not in base64_decoded(r.json()), path
            listed = {i["name"]: i for i in (await http.get("/meshes/default/secrets")).json()["items"]}
            assert set(listed) == {CA_KEY, CA_CERT, DP_KEY, BYO_KEY, PASSWORD}
            assert all("data" not in listed[n] for n in (CA_KEY, DP_KEY, BYO_KEY))
            assert "data" in listed[PASSWORD]
            assert "data" in listed[CA_CERT]
            # Bring your own CA: writing a key Secret stays allowed.
            own = base64.b64encode(generate_key_pem()).decode()
            r = await http.put(
                "/meshes/default/secrets/default.ca-builtin-key-mine",
                json={"type": "Secret", "mesh": "default", "name": "default.ca-builtin-key-mine", "data": own},
            )
            assert r.status_code == 201, r.text
            r = await http.post("/tokens/user", json={"name": "bob", "groups": ["users"], "validFor": "1h"})
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/plain")
            assert unverified_payload(r.text)["Groups"] == ["users"]
            assert (await http.delete("/meshes/other")).status_code == 200


def base64_decoded(page: dict[str, object]) -> str:
    """Every Secret's data in a list answer, decoded, joined: what a reader of the answer could learn."""
    items = page.get("items")
    assert isinstance(items, list)
    return "".join(base64.b64decode(i.get("data", "")).decode("utf-8", "replace") for i in items)


async def test_post_tokens_user_names_each_bad_field(tmp_path: Path) -> None:
    """Kuma's 400 "Invalid request" with a field per problem."""
    async with global_api(tmp_path) as api:
        admin = await api.users.issue("root", ["mesh-system:admin"], 3600)
        async with api.client(admin) as http:
            r = await http.post("/tokens/user", json={"groups": "admins", "validFor": "0s"})
        assert r.status_code == 400
        assert r.json()["title"] == "Invalid request"
        assert [p["field"] for p in r.json()["invalid_parameters"]] == ["name", "groups", "validFor"]


async def test_a_revoked_user_token_is_refused_at_once(tmp_path: Path) -> None:
    """Revoke through the API by the token's jti; the next request with it is 401 'revoked'."""
    async with global_api(tmp_path) as api:
        admin = await api.users.issue("root", ["mesh-system:admin"], 3600)
        async with api.client(admin) as http:
            alice = (await http.post("/tokens/user", json={"name": "alice", "validFor": "1h"})).text
            async with api.client(alice) as as_alice:
                assert (await as_alice.get("/meshes")).status_code == 200
                jti = unverified_payload(alice)["jti"]
                r = await http.post("/tokens/revocations", json={"type": "user", "id": jti})
                assert r.status_code == 200, r.text
                r = await as_alice.get("/meshes")
                assert r.status_code == 401
                assert "revoked" in r.json()["detail"]


async def test_a_token_of_a_rotated_out_key_is_refused_after_the_grace_period(tmp_path: Path) -> None:
    """Rotate the user token signing key with a 1h grace: old tokens work for the hour, then 401."""
    async with global_api(tmp_path) as api:
        admin = await api.users.issue("root", ["mesh-system:admin"], 30 * 24 * 3600)
        async with api.client(admin) as http:
            r = await http.post("/tokens/signing-keys/rotate", json={"type": "user", "gracePeriod": "1h"})
            assert r.status_code == 200, r.text
            api.clock.now += 1800
            assert (await http.get("/meshes")).status_code == 200
            api.clock.now += 3600
            r = await http.get("/meshes")
            assert r.status_code == 401
            assert "retired" in r.json()["detail"]
        fresh = await api.users.issue("root", ["mesh-system:admin"], 3600)
        async with api.client(fresh) as http:
            assert (await http.get("/meshes")).status_code == 200


async def test_localhost_is_admin_unless_a_token_says_otherwise_or_a_proxy_or_browser_is_involved(
    tmp_path: Path,
) -> None:
    """With localhost_is_admin a direct loopback call is admin; a token still decides who you are; a proxy
    hop or a cross-site browser request makes a loopback caller anonymous (Kuma v2.7.29)."""
    async with global_api(tmp_path, localhost_is_admin=True) as api, api.client() as http:
        assert (await http.put("/meshes/local", json={"type": "Mesh", "name": "local"})).status_code == 201
        reader = await api.users.issue("alice", ["users"], 3600)
        r = await http.delete("/meshes/local", headers={"Authorization": f"Bearer {reader}"})
        assert r.status_code == 403
        for headers in ({"X-Forwarded-For": "203.0.113.9"}, {"Origin": "http://evil.example"}):
            r = await http.delete("/meshes/local", headers=headers)
            assert r.status_code == 401, headers
        assert (await http.delete("/meshes/local")).status_code == 200


def _non_loopback_address() -> str:
    """This host's address on its default route (no packet is sent), or skip when it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("198.51.100.1", 9))
        except OSError:
            pytest.skip("no non-loopback IPv4 address to act as a remote client")
        address = str(s.getsockname()[0])
    if address.startswith("127."):
        pytest.skip("no non-loopback IPv4 address to act as a remote client")
    return address


async def test_a_remote_caller_is_anonymous_even_with_localhost_is_admin_and_the_admin_token_works(
    tmp_path: Path,
) -> None:
    """Served on this host's non-loopback address, so the caller's peer is not loopback: no token is 401
    (even with localhost_is_admin), the admin token written to the data dir is 0600 and works."""
    host = _non_loopback_address()
    async with global_api(tmp_path, localhost_is_admin=True, host=host) as api:
        path = await ensure_admin_token(api.users, tmp_path / "global")
        assert path is not None
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        async with api.client() as http:
            assert (await http.delete("/meshes/default")).status_code == 401
        async with api.client(path.read_text().strip()) as http:
            assert (await http.get("/meshes/default/secrets")).status_code == 200


async def test_the_admin_token_file_is_owner_only_kept_while_valid_and_replaced_when_not(tmp_path: Path) -> None:
    """First start writes it 0600; a restart keeps a valid one (tightening a widened mode); a revoked,
    garbage or non-admin token is replaced."""
    store = await open_store("memory", data_dir=tmp_path)
    try:
        users = UserTokens(store)
        path = await ensure_admin_token(users, tmp_path)
        assert path is not None
        assert path == tmp_path / "admin-user-token"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        first = path.read_text().strip()
        claims = await users.verify(first)
        assert (claims.name, claims.groups) == ("mesh-system:admin", ("mesh-system:admin",))
        os.chmod(path, 0o644)
        await ensure_admin_token(users, tmp_path)
        assert path.read_text().strip() == first
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        await users.revocations.revoke(claims.jti)
        await ensure_admin_token(users, tmp_path)
        second = path.read_text().strip()
        assert second != first
        assert (await users.verify(second)).groups == ("mesh-system:admin",)
        for replaced in ("garbage", await users.issue("alice", ["users"], 3600)):
            path.write_text(replaced)
            await ensure_admin_token(users, tmp_path)
            assert path.read_text().strip() != replaced
            assert "mesh-system:admin" in (await users.verify(path.read_text().strip())).groups
    finally:
        await store.close()
