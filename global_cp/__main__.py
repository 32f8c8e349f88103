from __future__ import annotations

from global_cp.cli import main

main()
