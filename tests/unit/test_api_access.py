"""The API's access table, the direct-loopback rule and the private-key rules, as pure functions."""

from __future__ import annotations

import base64

import pytest

from meshgate.auth.jwt import generate_key_pem
from meshgate.rest.access import ADMIN, ANONYMOUS, RULES, Rule, authenticated, decide, rule_for
from meshgate.rest.authn import direct_loopback
from meshgate.rest.errors import ApiError
from meshgate.rest.private_keys import holds_private_key, redact
from meshgate.testing.factory import secret
from meshgate.tokens.user_route import parse_user_token_request

READER = authenticated("alice", ["users"])

WRITES = [
    ("PUT", "/meshes/{name}"),
    ("DELETE", "/meshes/{name}"),
    ("PUT", "/meshes/{mesh}/meshgateways/{name}"),
    ("DELETE", "/zones/{name}"),
    ("POST", "/anything/at/all"),
]
ADMIN_READS = [
    ("GET", "/meshes/{mesh}/secrets"),
    ("GET", "/meshes/{mesh}/secrets/{name}"),
    ("GET", "/secrets"),
    ("HEAD", "/secrets"),
    ("GET", "/meshes/{mesh}/dataplanes/{name}/xds"),
    ("GET", "/tokens/signing-keys"),
    ("GET", "/tokens/revocations"),
]
TOKEN_WRITES = [
    ("POST", "/tokens/zone"),
    ("POST", "/tokens/user"),
    ("POST", "/tokens/revocations"),
    ("POST", "/tokens/signing-keys/rotate"),
]
READS = [
    ("GET", "/meshes"),
    ("GET", "/meshes/{name}"),
    ("GET", "/meshes/{mesh}/dataplanes/{name}"),
    ("GET", "/meshes/{mesh}/dataplanes/_overview"),
    ("GET", "/zones/_overview"),
    ("GET", "/zones+insights"),
    ("GET", "/zones+insights/{name}"),
    ("GET", "/meshes/{mesh}/dataplanes+insights"),
    ("GET", "/meshes/{mesh}/dataplanes+insights/{name}"),
    ("GET", "/dataplanes+insights"),
    ("GET", "/meshes/{mesh}/meshgateways/{name}/dataplanes"),
    ("GET", "/config"),
    ("GET", "/kds/trace"),
    ("GET", "/status/kds"),
    ("GET", "/_resources"),
]


def test_the_table_ends_with_rows_that_match_everything() -> None:
    """Every request meets a row: the last two are the catch-alls (GET: read; anything else: admin)."""
    assert RULES[-2].rule is Rule.READ
    assert RULES[-1].rule is Rule.ADMIN
    assert not RULES[-1].methods


@pytest.mark.parametrize(("method", "path"), [("GET", "/"), ("GET", "/openapi.json"), ("HEAD", "/")])
def test_only_the_index_and_the_api_description_are_public(method: str, path: str) -> None:
    """Anonymous callers reach the index and /openapi.json, and nothing else."""
    assert decide(method, path, ANONYMOUS).allowed


@pytest.mark.parametrize(("method", "path"), WRITES + ADMIN_READS + TOKEN_WRITES + READS)
def test_anonymous_is_401_everywhere_else_and_told_how_to_authenticate(method: str, path: str) -> None:
    """Anonymous: 401 with a message naming the header and where tokens come from."""
    decision = decide(method, path, ANONYMOUS)
    assert (decision.allowed, decision.status) == (False, 401)
    assert "Authorization: Bearer" in decision.message


@pytest.mark.parametrize(("method", "path"), READS)
def test_any_authenticated_user_reads_resources_insights_traces_and_status(method: str, path: str) -> None:
    """A token in any group reads what is not a Secret, a config dump or a token endpoint."""
    assert decide(method, path, READER).allowed


@pytest.mark.parametrize(("method", "path"), WRITES + ADMIN_READS + TOKEN_WRITES)
def test_a_reader_is_403_on_writes_secrets_dumps_and_tokens_with_what_is_missing(method: str, path: str) -> None:
    """403 names the user, their groups, what they may not do, and the group that may."""
    decision = decide(method, path, READER)
    assert (decision.allowed, decision.status) == (False, 403)
    assert 'the user "alice" in groups [users, mesh-system:authenticated] may not' in decision.message
    assert "ask an admin for a token in group mesh-system:admin" in decision.message
    assert rule_for(method, path).what in decision.message


@pytest.mark.parametrize(("method", "path"), WRITES + ADMIN_READS + TOKEN_WRITES + READS)
def test_the_admin_group_may_do_everything(method: str, path: str) -> None:
    """Any user in mesh-system:admin, whatever its name, passes every row."""
    assert decide(method, path, ADMIN).allowed
    assert decide(method, path, authenticated("ops-bot", ["mesh-system:admin"])).allowed


def test_a_token_cannot_claim_authenticated_without_being_verified() -> None:
    """Group mesh-system:authenticated is added by verification; ANONYMOUS never has it."""
    assert not ANONYMOUS.authenticated
    assert authenticated("x", ["mesh-system:authenticated"]).groups == ("mesh-system:authenticated",)


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        ("127.0.0.1", {"Host": "127.0.0.1:5681"}, True),
        ("127.8.9.10", {"Host": "localhost:5681"}, True),
        ("::1", {"Host": "[::1]:5681"}, True),
        ("::ffff:127.0.0.1", {"Host": "127.0.0.1"}, True),
        ("192.0.2.7", {"Host": "127.0.0.1:5681"}, False),
        ("127.0.0.1", {"Host": "cp.example.com:5681"}, False),
        ("127.0.0.1", {"Host": "127.0.0.1:5681", "X-Forwarded-For": "203.0.113.9"}, False),
        ("127.0.0.1", {"Host": "127.0.0.1:5681", "Forwarded": "for=203.0.113.9"}, False),
        ("127.0.0.1", {"Host": "127.0.0.1:5681", "X-Real-IP": "203.0.113.9"}, False),
        ("127.0.0.1", {"Host": "127.0.0.1:5681", "Sec-Fetch-Site": "cross-site"}, False),
        ("127.0.0.1", {"Host": "127.0.0.1:5681", "Sec-Fetch-Site": "same-origin"}, True),
        ("127.0.0.1", {"Host": "127.0.0.1:5681", "Origin": "http://127.0.0.1:5681"}, True),
        ("127.0.0.1", {"Host": "127.0.0.1:5681", "Origin": "http://evil.example"}, False),
        ("127.0.0.1", {"Host": "127.0.0.1:5681", "Origin": "http://127.0.0.1:8000"}, False),
        ("127.0.0.1", {"Host": "127.0.0.1:5681", "Origin": "null"}, False),
        ("127.0.0.1", {}, False),
    ],
)
def test_direct_loopback_is_kumas_check(peer: str, headers: dict[str, str], expected: bool) -> None:
    """Loopback peer, no proxy hop, loopback Host, no cross-site browser request (Kuma v2.7.29 localhost.go)."""
    assert direct_loopback(peer, headers) is expected


def _secret(name: str, data: bytes) -> dict[str, object]:
    return secret(name, data)


def test_private_keys_are_known_by_name_or_by_a_pem_private_key_block() -> None:
    """Our CA and token key names, and any PEM PRIVATE KEY block, whatever the Secret's name."""
    assert holds_private_key("default.ca-builtin-key-ca-1", b"")
    assert holds_private_key("dataplane-token-signing-key-default-2", b"")
    assert holds_private_key("my-own-ca", generate_key_pem())
    assert holds_private_key("legacy", b"-----BEGIN RSA PRIVATE KEY-----\nabc\n")
    assert not holds_private_key("default.ca-builtin-cert-ca-1", b"-----BEGIN CERTIFICATE-----\n")
    assert not holds_private_key("dataplane-token-revocations-default", b"a,b")


def test_redact_drops_only_private_key_data_anywhere_in_an_answer() -> None:
    """Lists keep every item (so totals and paging hold); only the private keys lose `data`."""
    page = {
        "total": 3,
        "items": [
            _secret("default.ca-builtin-key-ca-1", b"k"),
            _secret("password", b"hunter2"),
            {"nested": [_secret("byo", generate_key_pem())]},
        ],
    }
    out, dropped = redact(page)
    assert dropped == ["default.ca-builtin-key-ca-1", "byo"]
    assert "data" not in out["items"][0]
    assert "data" not in out["items"][2]["nested"][0]
    assert out["items"][1]["data"] == base64.b64encode(b"hunter2").decode()
    assert out["total"] == 3


def test_a_user_token_request_names_every_bad_field() -> None:
    """Kuma's messages for name and validFor, and ours for groups."""
    with pytest.raises(ApiError) as caught:
        parse_user_token_request({"groups": ["ok", 3]})
    fields = {p.field: p.reason for p in caught.value.invalid_parameters}
    assert fields == {"name": "cannot be empty", "groups": "must be a list of strings", "validFor": "cannot be empty"}
    with pytest.raises(ApiError) as caught:
        parse_user_token_request({"name": "a b", "groups": [""], "validFor": "soon"})
    assert [p.field for p in caught.value.invalid_parameters] == ["name", "groups[0]", "validFor"]
    assert parse_user_token_request({"name": "john", "groups": ["users", "users"], "validFor": "24h"}) == (
        "john",
        ("users",),
        86400,
    )
