"""Opens the ResourceStore a control plane's `--store` URL names.

Accepted forms::

    memory        MemoryStore: nothing persists (tests, throwaway zones)
    sqlite        SqliteStore at <data_dir>/meshgate.db (the default of both control planes)
    sqlite:PATH   SqliteStore at PATH; a relative PATH is relative to the working directory
    redis://HOST:PORT/DB[?prefix=P]   RedisStore, shared by replicas (rediss:// for TLS); keys under P,
                  default "meshgate:". Opening does no I/O; start `store.follow` for every replica's changes.

Anything else is a `ValueError` naming these forms.

`open_store` is async because opening SQLite touches the disk (and may migrate the schema); it runs
that in a worker thread, like every other SqliteStore call.
"""

from __future__ import annotations

import pathlib

import anyio.to_thread

from meshgate.store.memory import MemoryStore
from meshgate.store.protocol import ResourceStore
from meshgate.store.redis import RedisStore
from meshgate.store.sqlite import SqliteStore

__all__ = ["DEFAULT_SQLITE_FILE", "open_store"]

DEFAULT_SQLITE_FILE = "meshgate.db"

_ACCEPTED = "'memory', 'sqlite' (<data_dir>/meshgate.db), 'sqlite:PATH' or 'redis://HOST:PORT/DB'"


async def open_store(url: str, *, data_dir: pathlib.Path) -> ResourceStore:
    """Opens the store `url` names; `data_dir` is created (with its parents) when the URL is bare `sqlite`.

    A RedisStore is returned unconnected (it connects on first use and fails then with
    StoreUnavailableError), so a control plane can start while Redis is down.

    For ``sqlite:PATH`` the parent directory of PATH is created too. The caller owns the store and must
    `close()` it.
    """
    if url == "memory":
        return MemoryStore()
    if url == "sqlite":
        return await _open_sqlite(data_dir / DEFAULT_SQLITE_FILE)
    if url.startswith("redis://") or url.startswith("rediss://"):
        return RedisStore(url)
    if url.startswith("sqlite://"):
        # SQLAlchemy-style URLs would silently mean a path starting with "//"; refuse the ambiguity.
        raise ValueError(f"store {url!r}: write a SQLite path as 'sqlite:PATH', not as a URL; use {_ACCEPTED}")
    if url.startswith("sqlite:") and url != "sqlite:":
        return await _open_sqlite(pathlib.Path(url.removeprefix("sqlite:")))
    raise ValueError(f"unknown store {url!r}; use {_ACCEPTED}")


async def _open_sqlite(path: pathlib.Path) -> SqliteStore:
    # 0o700: the database holds every resource, secrets included; only the control plane's user reads it.
    # (The mode applies only to directories this call creates.)
    await anyio.to_thread.run_sync(lambda: path.parent.mkdir(mode=0o700, parents=True, exist_ok=True))
    return await SqliteStore.open(path)
