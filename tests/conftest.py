"""Applies the missing-program policy (`meshgate.testing.tools`) to every test: a `ToolMissingError` raised
while a test or one of its fixtures runs becomes a skip on a developer machine and a failure under CI."""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

from meshgate.testing.tools import ToolMissingError
from tests.support.tools import settle_missing_tool


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    try:
        return (yield)
    except ToolMissingError as error:
        missing = error
    # Outside the except block, so the skip or failure is reported alone, not chained to the error.
    settle_missing_tool(missing, os.environ)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    try:
        return (yield)
    except ToolMissingError as error:
        missing = error
    # Outside the except block, so the skip or failure is reported alone, not chained to the error.
    settle_missing_tool(missing, os.environ)
