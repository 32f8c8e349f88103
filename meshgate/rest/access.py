"""Who may call which API endpoint: one table of (method, route pattern) -> rule, read top to bottom. No I/O.

Users are Kuma's (pkg/core/user/user.go): a name and groups. A token's user is also in
`mesh-system:authenticated`; a caller without a token (and not the local admin) is `mesh-system:anonymous`,
in `mesh-system:unauthenticated` only.

    PUBLIC   anyone, anonymous included: the index (`GET /`, which kumactl and probes read to find out what
             answers) and `GET /openapi.json` (the API's shape and its security scheme, so a client learns how
             to authenticate; neither holds any stored data), and the GUI's static files under `/gui` (the
             page reads everything it shows from the API, with the user's token: meshgate.gui)
    READ     any authenticated user
    ADMIN    only members of `mesh-system:admin`

The first row whose method and pattern match decides. A pattern is matched segment by segment against the
route's canonical path (`/meshes/{mesh}/secrets/{name}`): `*` is any one segment, a final `**` any rest.
Kuma 2.7 lets every authenticated user read Secrets and only guards writes through its RBAC; here reading a
Secret, a config dump (which inlines certificates and keys) or anything under `/tokens` is for admins only.
Kuma also lets anonymous callers read `/config` (its `controlPlaneMetadata` access includes
`mesh-system:unauthenticated`); here it needs a token, as it names the store's host, file paths and ports
(its secrets are never in it: meshgate.rest.cp_config).

Private keys are out of every rule's reach: `meshgate.rest.private_keys` refuses them to admins too.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from meshgate.auth.user_token import ADMIN_GROUP, ADMIN_NAME, AUTHENTICATED_GROUP

__all__ = [
    "ADMIN",
    "ANONYMOUS",
    "RULES",
    "Decision",
    "Rule",
    "User",
    "decide",
]

ANONYMOUS_NAME: Final = "mesh-system:anonymous"
UNAUTHENTICATED_GROUP: Final = "mesh-system:unauthenticated"


@dataclass(frozen=True, slots=True)
class User:
    name: str
    groups: tuple[str, ...]

    @property
    def authenticated(self) -> bool:
        return AUTHENTICATED_GROUP in self.groups

    @property
    def admin(self) -> bool:
        return ADMIN_GROUP in self.groups

    def describe(self) -> str:
        return f'the user "{self.name}" in groups [{", ".join(self.groups)}]'


def authenticated(name: str, groups: tuple[str, ...] | list[str]) -> User:
    """A user a token (or the localhost rule) vouched for: its groups plus `mesh-system:authenticated`."""
    return User(name, (*tuple(g for g in groups if g != AUTHENTICATED_GROUP), AUTHENTICATED_GROUP))


ADMIN: Final = authenticated(ADMIN_NAME, (ADMIN_GROUP,))
ANONYMOUS: Final = User(ANONYMOUS_NAME, (UNAUTHENTICATED_GROUP,))


class Rule(enum.Enum):
    PUBLIC = "public"
    READ = "read"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Row:
    methods: frozenset[str]  # empty: any method
    pattern: tuple[str, ...]
    rule: Rule
    what: str  # completes "<user> may not ...": what the row guards, in words


def _row(methods: str, pattern: str, rule: Rule, what: str) -> Row:
    chosen = frozenset() if methods == "*" else frozenset(methods.split("|"))
    return Row(chosen, tuple(s for s in pattern.split("/") if s), rule, what)


# Read top to bottom; the first match decides. HEAD is checked as GET.
RULES: Final = (
    _row("GET", "/", Rule.PUBLIC, "read the index"),
    _row("GET", "/openapi.json", Rule.PUBLIC, "read the API description"),
    # The GUI's static page and assets (meshgate.gui): no stored data; what they show they fetch from the API.
    _row("GET", "/gui/**", Rule.PUBLIC, "load the GUI"),
    _row("*", "/tokens/**", Rule.ADMIN, "issue, revoke or list tokens, or rotate signing keys (/tokens)"),
    _row("GET", "/meshes/*/secrets/**", Rule.ADMIN, "read Secrets"),
    _row("GET", "/secrets/**", Rule.ADMIN, "read Secrets"),
    _row("GET", "/meshes/*/dataplanes/*/xds", Rule.ADMIN, "read Envoy config dumps (they inline certificates)"),
    _row("GET", "/config", Rule.READ, "read the control plane's configuration"),
    _row("GET", "/**", Rule.READ, "read resources"),
    _row("*", "/**", Rule.ADMIN, "change anything (only GETs are open to every user)"),
)


@dataclass(frozen=True, slots=True)
class Decision:
    """`allowed`, or why not: `status` 401 (who are you?) or 403 (not you), and a message naming what is missing."""

    allowed: bool
    status: int = 200
    message: str = ""


def _matches(pattern: tuple[str, ...], path: tuple[str, ...]) -> bool:
    if pattern and pattern[-1] == "**":
        head = pattern[:-1]
        return len(path) >= len(head) and _matches(head, path[: len(head)])
    return len(pattern) == len(path) and all(p in ("*", s) for p, s in zip(pattern, path, strict=True))


def rule_for(method: str, path: str) -> Row:
    method = "GET" if method == "HEAD" else method
    segments = tuple(s for s in path.split("/") if s)
    for row in RULES:
        if (not row.methods or method in row.methods) and _matches(row.pattern, segments):
            return row
    raise AssertionError("the last row matches every request")  # pragma: no cover


def decide(method: str, path: str, user: User) -> Decision:
    """May `user` call `method` on `path` (the route's canonical path, or the raw path when no route matched)?"""
    row = rule_for(method, path)
    if row.rule is Rule.PUBLIC or (row.rule is Rule.READ and user.authenticated) or user.admin:
        return Decision(True)
    if not user.authenticated:
        return Decision(
            False,
            401,
            f"{method} {path} needs a user token: send 'Authorization: Bearer <token>' (meshgatectl --auth-token,"
            " or a control plane in its config file); an admin issues one with `meshgatectl generate user-token`",
        )
    return Decision(
        False,
        403,
        f"{user.describe()} may not {row.what}; ask an admin for a token in group {ADMIN_GROUP}",
    )
