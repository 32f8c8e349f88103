from __future__ import annotations

from meshgate.dp.cli import main

main()
