"""The global's upkeep of token signing keys: every Mesh gets its data plane token key, retired keys go.

A zone cannot create a mesh's data plane token key (mesh Secrets are the global's), yet it verifies and
issues data plane tokens: so the global creates `dataplane-token-signing-key-<mesh>-1` as soon as a Mesh
exists, and the key reaches zones with every other Secret. Level-triggered like `global_cp/ca.py`: any
Mesh change re-checks every Mesh. Keys past their retirement (after a rotation's grace period) are deleted
once a minute, so refused keys do not linger in the store or on zones.
"""

from __future__ import annotations

import anyio
import anyio.abc
import structlog

from meshgate.resources import kinds
from meshgate.store.protocol import ResourceStore, StoreError, iter_all
from meshgate.store.watch import WatchLog, reconcile_forever
from meshgate.tokens import DataplaneTokens, TokenType

__all__ = ["TokenKeyUpkeep"]

log = structlog.get_logger(__name__)

SWEEP_INTERVAL = 60.0


class TokenKeyUpkeep:
    def __init__(self, store: ResourceStore, dataplane: DataplaneTokens, others: list[TokenType]) -> None:
        self._store = store
        self._dataplane = dataplane
        self._others = others
        self._meshes: set[str] = set()

    async def reconcile(self) -> None:
        meshes = {m.meta.name async for m in iter_all(self._store, kinds.MESH)}
        for mesh in sorted(meshes):
            await self._dataplane.mesh(mesh).keys.signer()  # creates the first key when missing
        for gone in self._meshes - meshes:
            self._dataplane.forget(gone)
        self._meshes = meshes

    async def sweep(self) -> None:
        families = [*self._others, *(self._dataplane.mesh(m) for m in sorted(self._meshes))]
        for tokens in families:
            await tokens.keys.sweep()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._sweep_forever)
            await reconcile_forever(
                self._store,
                {kinds.MESH},
                lambda _: self.reconcile(),
                log=WatchLog(log, "token_keys.reconcile_failed"),
                task_status=task_status,
            )

    async def _sweep_forever(self) -> None:
        while True:
            await anyio.sleep(SWEEP_INTERVAL)
            try:
                await self.sweep()
            except StoreError as exc:
                log.warning("token_keys.sweep_failed", error=str(exc))
