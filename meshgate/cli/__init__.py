"""`meshgatectl`: kumactl's everyday verbs against a meshgate (or Kuma) control plane's HTTP API.

    meshgatectl.py   the command (`app`, `main`): get, apply, delete, and the groups below
    config.py        `config control-planes ...`, over `config_file.py` (kumactl's `~/.kumactl/config` layout)
    context.py       where the API is and who we are to it; how a failure ends the command
    client.py        a small synchronous client of the resource API
    output.py        tables, YAML and JSON, as kumactl prints them
    generate.py, tokens.py, inspect.py, kds.py   tokens; revoke/rotate; zone insights; KDS watch and trace

The control planes' own flags are in `meshgate/process/flags.py`.
"""

from __future__ import annotations

from meshgate.cli.meshgatectl import app, main

__all__ = ["app", "main"]
