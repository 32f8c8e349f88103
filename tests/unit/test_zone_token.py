"""Zone tokens (meshgate.auth.zone_token) and the KDS authenticator's decisions, with no I/O."""

from __future__ import annotations

import base64
import json
from functools import cache

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from meshgate.auth import AUTH_REASONS, ZoneAuthenticator, generate_key_pem, issue, parse_valid_for, public_key
from meshgate.auth.zone_token import REASONS, TokenError, private_key, verify

NOW = 1_800_000_000.0
DAY = 86400.0


@cache
def _key(which: int) -> bytes:
    return generate_key_pem()


def key_pem(which: int = 0) -> bytes:
    """One RSA key per `which` for the whole module: generating keys is the slow part."""
    return _key(which)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _decode(part: str) -> dict[str, object]:
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


def _reason(token: str, *, key: int = 0, now: float = NOW, scope: str = "cp") -> tuple[str, str]:
    with pytest.raises(TokenError) as info:
        verify(public_key(key_pem(key)), token, now, scope=scope)
    return info.value.code, str(info.value)


def test_round_trip_carries_kong_mesh_claims_and_header() -> None:
    token = issue(key_pem(), "west", ["cp"], 30 * DAY, NOW, jti="id-1")
    claims = verify(public_key(key_pem()), token, NOW + DAY)
    assert (claims.zone, claims.scope, claims.jti) == ("west", ("cp",), "id-1")
    assert (claims.issued_at, claims.expires_at) == (int(NOW), int(NOW + 30 * DAY))
    header, payload, _ = token.split(".")
    assert _decode(header) == {"alg": "RS256", "kid": "1", "typ": "JWT"}
    assert _decode(payload) == {
        "Zone": "west",
        "Scope": ["cp"],
        "exp": int(NOW + 30 * DAY),
        "iat": int(NOW),
        "jti": "id-1",
    }
    assert "=" not in token  # base64url without padding, as JWTs are written


def test_every_token_gets_its_own_id() -> None:
    a, b = (issue(key_pem(), "west", ["cp"], DAY, NOW) for _ in range(2))
    pk = public_key(key_pem())
    assert verify(pk, a, NOW).jti != verify(pk, b, NOW).jti


def test_tampered_payload_is_a_bad_signature() -> None:
    header, payload, signature = issue(key_pem(), "west", ["cp"], DAY, NOW).split(".")
    forged = _b64(json.dumps({**_decode(payload), "Zone": "east"}).encode())
    assert _reason(f"{header}.{forged}.{signature}")[0] == "bad_signature"


def test_another_keys_token_is_a_bad_signature() -> None:
    code, message = _reason(issue(key_pem(1), "west", ["cp"], DAY, NOW))
    assert code == "bad_signature"
    assert "signing key" in message


def test_expired_token_names_the_zone() -> None:
    token = issue(key_pem(), "west", ["cp"], DAY, NOW)
    assert verify(public_key(key_pem()), token, NOW + DAY - 1).zone == "west"
    code, message = _reason(token, now=NOW + DAY)
    assert code == "expired"
    assert "'west'" in message


def test_token_without_the_scope_is_refused() -> None:
    code, message = _reason(issue(key_pem(), "west", ["ingress"], DAY, NOW))
    assert code == "missing_scope"
    assert "'cp'" in message


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-jwt",
        "a.b",
        "a..c",
        "!!!.e30.e30",
        _b64(b"[]") + ".e30.e30",
    ],
)
def test_malformed_tokens(token: str) -> None:
    assert _reason(token)[0] == "malformed"


def test_alg_none_is_never_accepted() -> None:
    _, payload, _ = issue(key_pem(), "west", ["cp"], DAY, NOW).split(".")
    header = _b64(json.dumps({"alg": "none", "kid": "1"}).encode())
    code, message = _reason(f"{header}.{payload}.{_b64(b'x')}")
    assert code == "malformed"
    assert "RS256" in message


def test_unknown_key_id_is_a_bad_signature() -> None:
    _, payload, signature = issue(key_pem(), "west", ["cp"], DAY, NOW).split(".")
    header = _b64(json.dumps({"alg": "RS256", "kid": "2"}).encode())
    assert _reason(f"{header}.{payload}.{signature}")[0] == "bad_signature"


def test_signed_payload_with_bad_claims_is_malformed() -> None:
    """A payload the key did sign but without usable claims: checked after the signature, still refused."""
    header = _b64(json.dumps({"alg": "RS256", "kid": "1"}).encode())
    payload = _b64(json.dumps({"Zone": "west", "Scope": "cp", "exp": int(NOW + DAY)}).encode())
    signature = private_key(key_pem()).sign(f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
    code, message = _reason(f"{header}.{payload}.{_b64(signature)}")
    assert code == "malformed"
    assert "Scope" in message


def test_issue_refuses_what_no_zone_could_use() -> None:
    with pytest.raises(ValueError, match="zone"):
        issue(key_pem(), "", ["cp"], DAY, NOW)
    with pytest.raises(ValueError, match="valid_for"):
        issue(key_pem(), "west", ["cp"], 0, NOW)


@pytest.mark.parametrize(
    ("text", "seconds"), [("720h", 720 * 3600), ("30d", 30 * 86400), ("1h30m", 5400), ("45s", 45), ("1d1s", 86401)]
)
def test_valid_for_in_kuma_syntax(text: str, seconds: int) -> None:
    assert parse_valid_for(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "10", "1y", "h", "-1h", "1.5h", "0h", "1h ", "36501d", "9" * 5001 + "h", "1" * 13 + "s"]
)
def test_valid_for_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_valid_for(text)


# -- the authenticator -------------------------------------------------------------------------------------


def authenticator(now: float = NOW) -> ZoneAuthenticator:
    return ZoneAuthenticator(public_key(key_pem()), clock=lambda: now)


def bearer(zone: str, scope: tuple[str, ...] = ("cp",), key: int = 0) -> str:
    return "Bearer " + issue(key_pem(key), zone, scope, DAY, NOW)


def test_authenticator_accepts_the_zones_own_token() -> None:
    assert authenticator().check("west", bearer("west")) is None
    assert authenticator().check("west", bearer("west").replace("Bearer", "bearer")) is None


@pytest.mark.parametrize(
    ("zone", "authorization", "code", "message"),
    [
        ("west", "", "missing_token", "missing zone token"),
        ("west", "Basic dXNlcjpwdw==", "malformed", "Bearer"),
        ("west", "Bearer garbage", "malformed", "not a JWT"),
        ("west", bearer("east"), "wrong_zone", 'zone token is for zone "east", not "west"'),
        ("", bearer("west"), "wrong_zone", "missing client-id"),
        ("west", bearer("west", ("egress",)), "missing_scope", "lacks scope 'cp'"),
        ("west", bearer("west", key=1), "bad_signature", "signature"),
    ],
)
def test_authenticator_refusals(zone: str, authorization: str, code: str, message: str) -> None:
    failure = authenticator().check(zone, authorization)
    assert failure is not None
    assert failure.code == code
    assert message in str(failure)
    assert failure.code in AUTH_REASONS


def test_authenticator_refuses_an_expired_token_by_its_clock() -> None:
    failure = authenticator(now=NOW + 2 * DAY).check("west", bearer("west"))
    assert failure is not None
    assert failure.code == "expired"


def test_every_token_reason_is_a_metric_reason() -> None:
    assert set(REASONS) <= set(AUTH_REASONS)


def test_refusals_are_counted_by_zone_until_the_label_cap_then_as_other() -> None:
    from collections import Counter

    from meshgate.transport.kds_admission import _MAX_ZONE_LABELS, count_auth_failure

    failures: Counter[tuple[str, str]] = Counter()
    for i in range(_MAX_ZONE_LABELS + 10):
        count_auth_failure(failures, f"zone-{i}", "missing_token")
    count_auth_failure(failures, "zone-0", "wrong_zone")  # a zone already counted keeps its own label
    assert len({z for z, _ in failures}) == _MAX_ZONE_LABELS + 1
    assert failures[("other", "missing_token")] == 10
    assert failures[("zone-0", "wrong_zone")] == 1
