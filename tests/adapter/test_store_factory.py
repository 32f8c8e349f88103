"""open_store: which store each `--store` URL opens, and where its file goes."""

from __future__ import annotations

import pathlib

import pytest

from meshgate.store import MemoryStore, RedisStore, SqliteStore, open_store


async def test_memory(tmp_path: pathlib.Path) -> None:
    store = await open_store("memory", data_dir=tmp_path / "unused")
    try:
        assert isinstance(store, MemoryStore)
    finally:
        await store.close()
    assert not (tmp_path / "unused").exists()


async def test_bare_sqlite_goes_in_the_data_dir_which_is_created(tmp_path: pathlib.Path) -> None:
    data_dir = tmp_path / "var" / "meshgate"
    store = await open_store("sqlite", data_dir=data_dir)
    try:
        assert isinstance(store, SqliteStore)
        assert pathlib.Path(store.path) == data_dir / "meshgate.db"
    finally:
        await store.close()
    assert (data_dir / "meshgate.db").is_file()
    assert data_dir.stat().st_mode & 0o077 == 0  # the data dir is private to the control plane's user


async def test_sqlite_path_relative_to_the_working_directory(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = await open_store("sqlite:state/cp.db", data_dir=tmp_path / "unused")
    await store.close()
    assert (tmp_path / "state" / "cp.db").is_file()
    assert not (tmp_path / "unused").exists()


async def test_sqlite_absolute_path(tmp_path: pathlib.Path) -> None:
    store = await open_store(f"sqlite:{tmp_path / 'abs.db'}", data_dir=tmp_path / "unused")
    await store.close()
    assert (tmp_path / "abs.db").is_file()


@pytest.mark.parametrize(
    ("url", "address", "prefix"),
    [
        ("redis://localhost:6379/0", "localhost:6379", "meshgate:"),
        ("redis://10.0.0.7/2?prefix=blue:", "10.0.0.7:6379", "blue:"),
        ("rediss://user:secret@redis.example:6380/0", "redis.example:6380", "meshgate:"),
    ],
)
async def test_redis_urls_open_a_redis_store_without_connecting(
    tmp_path: pathlib.Path, url: str, address: str, prefix: str
) -> None:
    store = await open_store(url, data_dir=tmp_path / "unused")
    try:
        assert isinstance(store, RedisStore)
        assert (store.address, store.prefix) == (address, prefix)
    finally:
        await store.close()
    assert not (tmp_path / "unused").exists()


@pytest.mark.parametrize("url", ["", "Memory", "sqlite:", "sqlite:///var/x.db", "postgres://db", "mem"])
async def test_anything_else_names_the_accepted_forms(tmp_path: pathlib.Path, url: str) -> None:
    with pytest.raises(ValueError, match=r"'memory', 'sqlite' .*, 'sqlite:PATH' or 'redis://HOST:PORT/DB'"):
        await open_store(url, data_dir=tmp_path)
