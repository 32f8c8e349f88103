"""Token formats with no I/O: the shared RS256 codec, user tokens, data plane tokens and Kuma's identity checks."""

from __future__ import annotations

import functools

import pytest

from meshgate.auth.dataplane_token import check_identity, issue_dataplane_token, verify_dataplane_token
from meshgate.auth.jwt import StaticKeys, TokenError, decode, encode, generate_key_pem, load_private_key
from meshgate.auth.user_token import issue_user_token, verify_user_token
from meshgate.auth.zone_token import parse_valid_for

NOW = 1_700_000_000.0
DAY = 86400


@functools.cache
def key(n: int = 0):  # type: ignore[no-untyped-def]
    return load_private_key(generate_key_pem())


def keys(**by_kid: int) -> StaticKeys:
    return StaticKeys({kid: key(n).public_key() for kid, n in by_kid.items()})


def test_a_token_verifies_only_with_the_key_its_kid_names() -> None:
    token = encode(key(1), "2", {"exp": int(NOW) + 60, "iat": int(NOW)})
    assert decode(token, keys(**{"2": 1}), NOW)[0] == "2"
    with pytest.raises(TokenError) as unknown:
        decode(token, keys(**{"1": 1}), NOW)
    assert unknown.value.code == "bad_signature"
    assert "rotated" in str(unknown.value)
    with pytest.raises(TokenError) as wrong:
        decode(token, keys(**{"2": 2}), NOW)
    assert wrong.value.code == "bad_signature"


def test_oversized_and_truncated_tokens_are_malformed() -> None:
    for bad in ("x" * 20_000, "a.b", "..", "a.b.c.d"):
        with pytest.raises(TokenError) as err:
            decode(bad, keys(**{"1": 1}), NOW)
        assert err.value.code == "malformed"


def test_user_token_round_trip_and_expiry() -> None:
    token = issue_user_token(key(1), "1", "alice", ["team-a"], DAY, NOW)
    claims = verify_user_token(keys(**{"1": 1}), token, NOW + 10)
    assert (claims.name, claims.groups) == ("alice", ("team-a",))
    assert claims.jti
    with pytest.raises(TokenError) as err:
        verify_user_token(keys(**{"1": 1}), token, NOW + DAY)
    assert err.value.code == "expired"
    assert "'alice'" in str(err.value)


def dp_token(**claims: object) -> str:
    return issue_dataplane_token(key(1), "1", valid_for=DAY, now=NOW, **claims)  # type: ignore[arg-type]


def test_dataplane_token_binds_mesh_name_type_and_tags_as_kuma_does() -> None:
    token = dp_token(mesh="default", name="edge-1", tags={"kuma.io/service": ["edge", "edge-2"]}, proxy_type="gateway")
    claims = verify_dataplane_token(keys(**{"1": 1}), token, NOW)
    ok: dict[str, object] = {
        "mesh": "default",
        "name": "edge-1",
        "tags": {"kuma.io/service": ["edge"]},
        "proxy_type": "gateway",
    }
    check_identity(claims, **ok)  # type: ignore[arg-type]
    refusals: dict[str, dict[str, object]] = {
        "proxy mesh from requestor: other is different than in token: default": {"mesh": "other"},
        "proxy name from requestor: edge-2 is different than in token: edge-1": {"name": "edge-2"},
        "proxy type from requestor: dataplane is different than in token: gateway": {"proxy_type": "dataplane"},
        "dataplane has no tag 'kuma.io/service' required by the token": {"tags": {}},
        "dataplane contains tag 'kuma.io/service' with value 'web'": {"tags": {"kuma.io/service": ["web"]}},
    }
    for message, change in refusals.items():
        with pytest.raises(TokenError) as err:
            check_identity(claims, **{**ok, **change})  # type: ignore[arg-type]
        assert err.value.code == "wrong_identity"
        assert message in str(err.value)


def test_a_dataplane_token_without_name_or_type_allows_any() -> None:
    claims = verify_dataplane_token(keys(**{"1": 1}), dp_token(mesh="default"), NOW)
    check_identity(claims, mesh="default", name="anything", tags={"x": ["y"]}, proxy_type="dataplane")


def test_durations_are_bounded() -> None:
    assert parse_valid_for("1h30m") == 5400
    for bad in ("9" * 40 + "h", "36500000d", "0s", "h"):
        with pytest.raises(ValueError, match="invalid duration"):
            parse_valid_for(bad)
