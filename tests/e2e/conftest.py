from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import ProcessGroup, process_group


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[ProcessGroup]:
    with process_group(tmp_path) as group:
        yield group
