"""MeshGatewayRoute rules: Kuma 2.7's route validator plus meshgate's additions, exact paths and messages."""

from __future__ import annotations

import pytest

from meshgate.resources import codec
from meshgate.resources.kinds import meshgatewayroute


def violations(text: str) -> list[tuple[str, str]]:
    (doc,) = codec.load_documents(text)
    return [(v.field, v.message) for v in codec.validate(codec.decode(doc))]


HEADER = """
type: MeshGatewayRoute
name: route
mesh: default
selectors:
- match:
    kuma.io/service: gateway
"""

BACKEND = """
      backends:
      - destination:
          kuma.io/service: target
"""

VALID = {
    "http with every kind of match": """
conf:
  http:
    hostnames:
    - example.com
    - '*.example.org'
    rules:
    - matches:
      - path:
          match: EXACT
          value: /exact
        method: GET
        headers:
        - name: x-env
          value: prod
        - name: x-debug
          match: PRESENT
        queryParameters:
        - name: q
          match: REGEX
          value: '^a+$'
      - path:
          match: REGEX
          value: '^/v[0-9]+/'
"""
    + BACKEND,
    "prefix / with a rewrite and header filters": """
conf:
  http:
    rules:
    - matches:
      - path:
          match: PREFIX
          value: /
      filters:
      - requestHeader:
          set:
          - name: x-a
            value: b
          remove: [x-c]
      - responseHeader:
          add:
          - name: x-served-by
            value: gateway
      - rewrite:
          replacePrefixMatch: /v2
      - mirror:
          percentage: 10
          backend:
            destination:
              kuma.io/service: shadow
"""
    + BACKEND,
    "redirect only": """
conf:
  http:
    rules:
    - matches:
      - path:
          match: PREFIX
          value: /old
      filters:
      - redirect:
          scheme: https
          hostname: example.com
          statusCode: 301
          path:
            replacePrefixMatch: /new
""",
    "host rewrite beside a non-host header": """
conf:
  http:
    rules:
    - matches:
      - method: POST
      filters:
      - rewrite:
          hostToBackendHostname: true
      - requestHeader:
          set:
          - name: x-host
            value: a
"""
    + BACKEND,
    "tcp": """
conf:
  tcp:
    rules:
    - backends:
      - weight: 1
        destination:
          kuma.io/service: db
""",
}


@pytest.mark.parametrize("body", VALID.values(), ids=VALID.keys())
def test_valid(body: str) -> None:
    assert violations(HEADER + body) == []


RULE = "conf.http.rules[0]"

ERRORS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "no conf": ("", [("conf", "cannot be empty")]),
    "empty http rules": ("conf:\n  http:\n    rules: []\n", [("conf.http.rules", "cannot be empty")]),
    "empty tcp rules and backends": (
        """
conf:
  tcp:
    rules:
    - backends: []
""",
        [("conf.tcp.rules[0].backends", "cannot be empty")],
    ),
    "no matches and no backends": (
        """
conf:
  http:
    rules:
    - backends: []
""",
        # Kuma checks nothing more in a rule without matches.
        [(f"{RULE}.matches", "cannot be empty")],
    ),
    "backend without service": (
        """
conf:
  http:
    rules:
    - matches:
      - path:
          value: /
      backends:
      - weight: 1
        destination:
          version: v1
      - destination: {}
""",
        [
            (f"{RULE}.backends[0]", 'mandatory tag "kuma.io/service" is missing'),
            (f"{RULE}.backends[1]", "must have at least one tag"),
            (f"{RULE}.backends[1]", 'mandatory tag "kuma.io/service" is missing'),
        ],
    ),
    "empty match and bad paths": (
        """
conf:
  http:
    rules:
    - matches:
      - {}
      - path:
          match: REGEX
      - path:
          match: PREFIX
          value: api
      - path:
          value: relative
      - path:
          value: /a/../b
"""
        + BACKEND,
        [
            (f"{RULE}.matches[0]", "cannot be empty"),
            (f"{RULE}.matches[1].value", "cannot be empty"),
            (f"{RULE}.matches[2].value", "must be an absolute path"),
            (f"{RULE}.matches[3].value", "must be an absolute path"),
            (f"{RULE}.matches[4].value", 'must not contain ".." segments'),
        ],
    ),
    "header and query matches": (
        """
conf:
  http:
    rules:
    - matches:
      - headers:
        - value: x
        - name: x-a
        - name: x-b
          match: ABSENT
          value: y
        - name: 'bad header'
          value: z
        queryParameters:
        - value: v
        - name: n
"""
        + BACKEND,
        [
            (f"{RULE}.matches[0].headers[0].name", "cannot be empty"),
            (f"{RULE}.matches[0].headers[1].value", "cannot be empty"),
            (f"{RULE}.matches[0].headers[2].value", "cannot be set"),
            (f"{RULE}.matches[0].headers[3].name", "must be a valid HTTP header name"),
            (f"{RULE}.matches[0].query_parameters[0].name", "cannot be empty"),
            (f"{RULE}.matches[0].query_parameters[1].value", "cannot be empty"),
        ],
    ),
    "header filters": (
        """
conf:
  http:
    rules:
    - matches:
      - path:
          value: /
      filters:
      - requestHeader: {}
      - requestHeader:
          set:
          - name: x-a
          add:
          - value: b
          remove: ['']
      - responseHeader:
          set:
          - name: host
            value: a
      - {}
"""
        + BACKEND,
        [
            (f"{RULE}.filters[0].request_header", "cannot be empty"),
            (f"{RULE}.filters[1].request_header.set[0].value", "cannot be empty"),
            (f"{RULE}.filters[1].request_header.add[0].name", "cannot be empty"),
            (f"{RULE}.filters[1].request_header.remove[0]", "cannot be empty"),
            (f"{RULE}.filters[3]", "cannot be empty"),
        ],
    ),
    "host header with hostToBackendHostname": (
        """
conf:
  http:
    rules:
    - matches:
      - path:
          value: /
      filters:
      - rewrite:
          hostToBackendHostname: true
      - requestHeader:
          set:
          - name: host
            value: a
          add:
          - name: ':authority'
            value: b
"""
        + BACKEND,
        [
            # Kuma numbers the filters without the host rewrite: the header filter is filters[0].
            (
                f"{RULE}.filters[0].request_header.set[0]",
                "cannot modify 'host' header, when route has set 'rewrite.host_to_backend_hostname' option",
            ),
            (
                f"{RULE}.filters[0].request_header.add[0]",
                "cannot modify ':authority' header, when route has set 'rewrite.host_to_backend_hostname' option",
            ),
        ],
    ),
    "mirror": (
        """
conf:
  http:
    rules:
    - matches:
      - path:
          value: /
      filters:
      - mirror:
          percentage: 101
          backend:
            weight: 5
            destination:
              kuma.io/service: shadow
      - mirror: {}
"""
        + BACKEND,
        [
            (f"{RULE}.filters[0].mirror.percentage", "has to be in [0.0 - 100.0] range"),
            (f"{RULE}.filters[0].mirror.backend.weight", "must not be set"),
            (f"{RULE}.filters[1].mirror.percentage", "cannot be empty"),
            (f"{RULE}.filters[1].mirror.backend", "cannot be empty"),
        ],
    ),
    "redirect port, status and backends": (
        """
conf:
  http:
    rules:
    - matches:
      - path:
          value: /
      filters:
      - redirect:
          port: 70000
          statusCode: 300
"""
        + BACKEND,
        [
            (f"{RULE}.filters[0].redirect.port", "port must be in the range [1, 65535]"),
            (f"{RULE}.filters[0].redirect.status_code", "must be one of 301, 302, 303, 307, 308"),
            (f"{RULE}.backends", "must be empty when using redirect filters"),
        ],
    ),
    "redirect with another filter": (
        """
conf:
  http:
    rules:
    - matches:
      - path:
          value: /
      filters:
      - redirect:
          statusCode: 302
      - requestHeader:
          remove: [x-a]
""",
        [(f"{RULE}.filters", "redirects cannot be used with other filters")],
    ),
    "redirect status outside Kuma's range": (
        """
conf:
  http:
    rules:
    - matches:
      - path:
          value: /
      filters:
      - redirect:
          statusCode: 500
""",
        [(f"{RULE}.filters[0].redirect.status_code", "must be in the range [300, 308]")],
    ),
    "redirect beside another filter: backends are not checked": (
        """
conf:
  http:
    rules:
    - matches:
      - path:
          value: /
      filters:
      - redirect:
          statusCode: 302
      - responseHeader: {}
      backends:
      - destination:
          version: v1
""",
        [
            (f"{RULE}.filters[1].response_header", "cannot be empty"),
            (f"{RULE}.filters", "redirects cannot be used with other filters"),
        ],
    ),
    "prefix rewrite without a prefix match": (
        """
conf:
  http:
    rules:
    - matches:
      - path:
          value: /exact
      filters:
      - rewrite:
          replacePrefixMatch: /v2
"""
        + BACKEND,
        [(f"{RULE}.filters[0].rewrite.replacePrefixMatch", "cannot be used without a match on path prefix")],
    ),
    "route hostnames": (
        """
conf:
  http:
    hostnames: [Example.com, '*.']
    rules:
    - matches:
      - path:
          value: /
"""
        + BACKEND,
        [
            ("conf.http.hostnames[0]", "invalid hostname"),
            ("conf.http.hostnames[1]", "invalid wildcard domain"),
        ],
    ),
}


@pytest.mark.parametrize(("body", "expected"), ERRORS.values(), ids=ERRORS.keys())
def test_violations(body: str, expected: list[tuple[str, str]]) -> None:
    assert violations(HEADER + body) == expected


def test_selectors_are_required() -> None:
    text = """
type: MeshGatewayRoute
name: route
mesh: default
conf:
  tcp:
    rules:
    - backends:
      - destination:
          kuma.io/service: db
"""
    assert violations(text) == [("selectors", "must have at least one element")]


def test_descriptor() -> None:
    descriptor = meshgatewayroute.DESCRIPTOR
    assert (descriptor.singular, descriptor.plural) == ("meshgatewayroute", "meshgatewayroutes")
    assert descriptor.sends_to_zone()
    assert not descriptor.sends_to_global()
    assert descriptor.writable_on_global
    assert not descriptor.writable_on_zone
