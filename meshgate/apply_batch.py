"""The bulk apply request, as both ends know it: its path, its bounds and its body. No I/O.

`POST /_apply` carries `{"items": [resource, ...]}`, each item a resource in its Universal form (what
`PUT /meshes/{mesh}/{plural}/{name}` takes, with `type`, `name` and, for a mesh-scoped kind, `mesh`). The
control plane validates every item, then stores all of them in one transaction or none (`meshgate.rest.bulk`);
`meshgatectl apply -f` sends one such request for a file of several resources (`meshgate.cli.meshgatectl`),
split by `batches` only when the file is over these bounds. Kuma has no bulk endpoint; this one is ours.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any, Final

__all__ = ["APPLY_PATH", "MAX_APPLY_BYTES", "MAX_APPLY_ITEMS", "batches"]

APPLY_PATH: Final = "/_apply"
# Items in one request. Validation costs about 0.1 ms of CPU per resource, all of it holding the GIL the
# event loop needs too, so the bound keeps one request to a few seconds of work (25k routes); 10k routes and
# their gateways fit in one.
MAX_APPLY_ITEMS: Final = 25_000
# Bytes of one request: 32 resources of the single-resource limit (1 MiB), or 25k routes of about 1 KiB.
MAX_APPLY_BYTES: Final = 32 * 1024 * 1024


def _size(doc: Any) -> int:
    # The bytes the item adds to the body httpx sends (compact separators are not its default, so this
    # overestimates slightly, which errs on the side of a smaller request).
    return len(json.dumps(doc, ensure_ascii=False).encode()) + 2


def batches(
    docs: Sequence[Any], *, max_items: int = MAX_APPLY_ITEMS, max_bytes: int = MAX_APPLY_BYTES
) -> Iterator[list[Any]]:
    """`docs` in order, cut into runs that each fit one request; one run when everything fits.

    A single item larger than `max_bytes` still gets a run of its own: the server answers it 413, by name.
    """
    run: list[Any] = []
    size = len('{"items": []}')
    for doc in docs:
        item = _size(doc)
        if run and (len(run) >= max_items or size + item > max_bytes):
            yield run
            run, size = [], len('{"items": []}')
        run.append(doc)
        size += item
    if run:
        yield run
