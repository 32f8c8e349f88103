from __future__ import annotations

from zone_cp.cli import main

main()
