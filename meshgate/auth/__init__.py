"""Multi-zone authentication: zone tokens (Kong Mesh's scope `cp`) and the check the global's KDS server runs."""

from __future__ import annotations

from meshgate.auth.authenticator import AUTH_REASONS, AuthFailure, KDSAuth, ZoneAuthenticator
from meshgate.auth.zone_token import (
    Claims,
    TokenError,
    generate_key_pem,
    issue,
    parse_valid_for,
    private_key,
    public_key,
    verify,
)

__all__ = [
    "AUTH_REASONS",
    "AuthFailure",
    "Claims",
    "KDSAuth",
    "TokenError",
    "ZoneAuthenticator",
    "generate_key_pem",
    "issue",
    "parse_valid_for",
    "private_key",
    "public_key",
    "verify",
]
