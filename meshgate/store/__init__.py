"""Resource stores behind one protocol: memory, sqlite (the embedded default) and redis."""

from __future__ import annotations

from meshgate.store.events import ChangeBatch, ChangeEvent, ChangeHub, ChangeSubscriber, Op
from meshgate.store.factory import open_store
from meshgate.store.memory import MemoryStore
from meshgate.store.protocol import (
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    Page,
    ResourceStore,
    StoreError,
    StoreUnavailableError,
    iter_all,
)
from meshgate.store.redis import RedisStore
from meshgate.store.sqlite import SqliteStore

__all__ = [
    "AlreadyExistsError",
    "ChangeBatch",
    "ChangeEvent",
    "ChangeHub",
    "ChangeSubscriber",
    "ConflictError",
    "MemoryStore",
    "NotFoundError",
    "Op",
    "Page",
    "RedisStore",
    "ResourceStore",
    "SqliteStore",
    "StoreError",
    "StoreUnavailableError",
    "iter_all",
    "open_store",
]
