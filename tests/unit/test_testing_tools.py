"""The missing-program policy: a missing tool skips a test on a developer machine and fails it under CI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from meshgate.testing.tools import (
    ENVOY,
    GRPCURL,
    OPENSSL,
    REDIS_SERVER,
    TOOLS,
    Tool,
    ToolMissingError,
    Verdict,
    missing_tool_verdict,
    require,
)
from tests.support.tools import settle_missing_tool

NOWHERE = Tool("no-such-tool", "apt-get install no-such-tool", lambda: None)


@pytest.mark.parametrize(
    ("env", "verdict"),
    [
        ({}, Verdict.SKIP),
        ({"CI": ""}, Verdict.SKIP),  # set but empty: as unset, like most CI conventions
        ({"CI": "true"}, Verdict.FAIL),
        ({"CI": "1"}, Verdict.FAIL),
        ({"CI": "false"}, Verdict.FAIL),  # any non-empty value: a CI that says "false" still is one
    ],
)
def test_the_verdict_depends_on_ci_only(env: dict[str, str], verdict: Verdict) -> None:
    assert missing_tool_verdict(env) is verdict


def test_require_names_the_tool_and_its_package() -> None:
    with pytest.raises(ToolMissingError, match=r"^no-such-tool is not installed: apt-get install no-such-tool$"):
        require(NOWHERE)


def test_require_returns_what_the_tool_locates(tmp_path: Path) -> None:
    assert require(Tool("here", "-", lambda: tmp_path)) == tmp_path


def test_without_ci_a_missing_tool_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-such-tool is not installed"):
        settle_missing_tool(ToolMissingError(NOWHERE), os.environ)


def test_under_ci_a_missing_tool_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"no-such-tool is not installed: apt-get install no-such-tool"):
        settle_missing_tool(ToolMissingError(NOWHERE), os.environ)


def test_the_table_holds_every_tool_the_suite_runs() -> None:
    """The programs the issue names, each with an install hint a developer can act on."""
    assert {ENVOY, REDIS_SERVER, OPENSSL, GRPCURL} <= set(TOOLS.values())
    assert all(tool.install for tool in TOOLS.values())
