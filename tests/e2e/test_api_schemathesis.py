"""schemathesis against `/openapi.json` of a real global and a real zone: generated requests, valid and
invalid, for every documented operation; no answer may be a 5xx or contradict the document.

Stateless, a bounded number of examples per operation and generation mode, no shrinking (a failure is
reported as found; rerun with more examples to dig), so the test stays well under a minute on two cores.
Run with -s to see the totals. The request headers are the `headers` fixture, so an authenticated variant
(`Authorization: Bearer ...`) is one more parameter once the API has users.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.result import Err

from tests.support.processes import CPProcess, ProcessGroup

pytestmark = pytest.mark.e2e

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 8  # per operation and generation mode
# Never a speed assertion: a request that hangs is a failure to report, not a test that hangs.
REQUEST_TIMEOUT = 15.0
# Streams that never end (NDJSON until the client leaves) cannot be answered within a request timeout.
STREAMING = {("GET", "/kds/watch")}


# Who calls: the loopback admin (no token, `--api-localhost-is-admin` on, as every other test), nobody (the option
# off, no token: every operation but the index and the document must answer 401), the admin by its token file,
# and a read-only user (a token without the admin group: 403 for writes, Secrets, dumps and /tokens).
CALLERS = ["localhost-admin", "anonymous", "admin-token", "read-only-user"]


async def caller_headers(cp: CPProcess, caller: str) -> dict[str, str]:
    if caller in ("localhost-admin", "anonymous"):
        return {}
    admin = cp.admin_headers()
    assert admin, f"{cp.name} wrote no admin token"
    if caller == "admin-token":
        return admin
    async with httpx.AsyncClient(base_url=cp.url(), headers=admin, timeout=30) as http:
        r = await http.post("/tokens/user", json={"name": "viewer", "groups": ["team-a"], "validFor": "1h"})
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.text.strip()}"}


@dataclass
class Totals:
    operations: int = 0
    cases: int = 0
    server_errors: int = 0
    failures: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)


def run_schemathesis(base_url: str, headers: dict[str, str]) -> Totals:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    totals = Totals()
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            totals.failures.append(f"the document has an invalid operation: {result.err()}")
            continue
        operation = result.ok()
        if (operation.method.upper(), operation.path) in STREAMING:
            continue
        totals.operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _exercise(operation, mode, base_url, headers, totals)
    return totals


def _exercise(operation: Any, mode: GenerationMode, base_url: str, headers: dict[str, str], totals: Totals) -> None:
    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def exercise(case: schemathesis.Case[Any]) -> None:
        totals.cases += 1
        response = case.call(base_url=base_url, headers=headers, timeout=REQUEST_TIMEOUT)
        totals.statuses[response.status_code] += 1
        if response.status_code >= 500:
            totals.server_errors += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (FailureGroup, Failure) as exc:  # recorded, not raised: the test fails on the list below
            where = f"{case.method} {case.formatted_path} ({mode.value})"
            totals.failures.append(f"{where} -> {response.status_code}: {str(exc).strip()[:800]}")

    # Unsatisfiable: a negative mode with nothing to negate (an operation without parameters).
    with contextlib.suppress(hypothesis.errors.Unsatisfiable):
        exercise()


async def schemathesis_totals(cp: CPProcess, headers: dict[str, str]) -> Totals:
    # Blocking HTTP (requests) in a worker thread; the control planes are processes of their own.
    totals = await anyio.to_thread.run_sync(run_schemathesis, cp.url(), headers)
    print(
        f"\nschemathesis {cp.name}: {totals.operations} operations, {totals.cases} cases,"
        f" {totals.server_errors} server errors, {len(totals.failures)} failures;"
        f" statuses {dict(sorted(totals.statuses.items()))}"
    )
    for failure in totals.failures[:20]:
        print("  " + failure)
    return totals


# Every operation of two APIs, twice each, with generated requests: about a minute on a quiet machine, more when
# the machine is loaded, so it gets more room than the suite's 120 s default (a hang still ends it).
@pytest.mark.timeout(300)
@pytest.mark.parametrize("caller", CALLERS)
async def test_global_and_zone_apis_conform_to_their_openapi(procs: ProcessGroup, caller: str) -> None:
    flags = () if caller == "localhost-admin" else ("--api-localhost-is-admin=false",)
    g = await procs.global_cp("global", "--store", "memory", *flags)
    z = await procs.zone_cp("zone-1", g.ports["kds"], "--store", "memory", *flags)
    for cp in (g, z):
        totals = await schemathesis_totals(cp, await caller_headers(cp, caller))
        assert totals.operations > 10
        assert totals.server_errors == 0, totals.failures
        assert totals.failures == []
        if caller == "anonymous":
            # Nothing but the index and the document answers an anonymous caller.
            assert set(totals.statuses) - {401} <= {200, 404, 405}, totals.statuses
            assert totals.statuses[401] > totals.cases // 2, totals.statuses
