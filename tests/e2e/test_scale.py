"""bench/scale.py in CI size: 100 zones over 1k routes, in two fleet processes, against a global process.

What it checks is behaviour, never time: every zone gets the full state; one change reaches every zone; after
the global is killed with SIGKILL and restarted on the same store and port, every zone resumes by itself and
nothing is sent again (neither the zones nor the restarted global count a resource or a removal); and while
half the zones drop and resume at once, the changes made meanwhile reach every zone of the other half.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.scale import run_scale, table, targets

pytestmark = pytest.mark.e2e

ZONES, ROUTES, FLEETS, CHANGES = 100, 1000, 2, 2


@pytest.mark.timeout(300)
async def test_100_zones_sync_change_resume_after_kill_9_with_nothing_resent(tmp_path: Path) -> None:
    lines: list[str] = []
    (point,) = await run_scale(
        tmp_path, [ZONES], ROUTES, fleets=FLEETS, changes=CHANGES, admissions=16, settle=0.5, progress=lines.append
    )

    # run_scale returns only once every zone held every route (the fleets wait for it), and the global's own
    # insight showed every zone's stream open with every response ACKed.
    assert point.zones == ZONES
    assert point.sync_cpu > 0
    assert point.rss_synced > point.rss_empty > 0
    # Every measured change reached every zone.
    assert len(point.change_latencies) == ZONES * CHANGES
    # Resumed, not re-sent: the zones received nothing across the restart, the global counts nothing sent.
    assert point.resent_to_zones == 0, lines
    assert point.resent_by_global == 0, lines
    assert point.unchanged == 0
    # The storm: half the zones resumed while the other half kept receiving every change.
    assert point.storm_zones == ZONES // 2
    assert point.storm_latencies
    assert len(point.storm_latencies) % (ZONES - point.storm_zones) == 0
    report = table([point])
    assert str(ZONES) in report.splitlines()[-1]
    assert any("resources re-sent on resume: 0" in t for t in targets(point))
