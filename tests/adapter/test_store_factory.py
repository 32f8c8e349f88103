"""open_store: which store each `--store` URL opens, and where its file goes."""

from __future__ import annotations

import pathlib

import pytest

from meshgate.store import MemoryStore, SqliteStore, open_store


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


async def test_redis_is_not_supported_yet(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="not supported yet"):
        await open_store("redis://localhost:6379/0", data_dir=tmp_path)


@pytest.mark.parametrize("url", ["", "Memory", "sqlite:", "sqlite:///var/x.db", "postgres://db", "mem"])
async def test_anything_else_names_the_accepted_forms(tmp_path: pathlib.Path, url: str) -> None:
    with pytest.raises(ValueError, match=r"'memory', 'sqlite' .* or 'sqlite:PATH'"):
        await open_store(url, data_dir=tmp_path)
