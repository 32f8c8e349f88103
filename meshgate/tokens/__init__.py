"""Tokens kept in the store: signing keys that rotate, revocation lists, and the three token types.

`meshgate.auth` holds the pure token formats (JWT, claims, checks); this package adds where their keys and
revocation lists live, and the admin endpoints that revoke tokens and rotate keys.
"""

from __future__ import annotations

from meshgate.tokens.keys import LABEL_RETIRE_AT, KeyFamily, KeyInfo, SigningKeyMissing, SigningKeys
from meshgate.tokens.revocations import Revocations
from meshgate.tokens.routes import token_admin_routes
from meshgate.tokens.services import DataplaneTokens, TokenType, UserTokens, ZoneTokens
from meshgate.tokens.user_route import user_token_route

__all__ = [
    "LABEL_RETIRE_AT",
    "DataplaneTokens",
    "KeyFamily",
    "KeyInfo",
    "Revocations",
    "SigningKeyMissing",
    "SigningKeys",
    "TokenType",
    "UserTokens",
    "ZoneTokens",
    "token_admin_routes",
    "user_token_route",
]
