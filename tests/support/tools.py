"""The pytest side of the missing-program policy: `meshgate.testing.tools` decides, this raises the outcome."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NoReturn

import pytest

from meshgate.testing.tools import ToolMissingError, Verdict, missing_tool_verdict

__all__ = ["settle_missing_tool"]


def settle_missing_tool(error: ToolMissingError, env: Mapping[str, str]) -> NoReturn:
    """Skips the test, or fails it under CI, with the message naming the program and its package."""
    if missing_tool_verdict(env) is Verdict.FAIL:
        pytest.fail(f"{error} (CI is set: a missing tool fails the run instead of skipping)", pytrace=False)
    pytest.skip(str(error))
