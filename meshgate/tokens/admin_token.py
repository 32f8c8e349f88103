"""The admin user token written on first start to `<data-dir>/admin-user-token` (Kuma's admin token bootstrap).

Kuma keeps it in the global Secret `admin-user-token`, readable through its own API; here it is a file only
this OS user can read (mode 0600), so getting it needs a shell on the control plane's host, never the API.

On every start: a file whose mode lets anyone else read it is tightened to 0600 first (and the widening
logged); a token in it that still verifies (signature with a key in service, not expired, not revoked, in
group `mesh-system:admin`) is kept, so clients holding it keep working; anything else is replaced. The
token itself is never logged, only the path.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

import anyio
import structlog

from meshgate.auth.jwt import TokenError
from meshgate.auth.user_token import ADMIN_GROUP, ADMIN_NAME
from meshgate.store.protocol import StoreError
from meshgate.tokens.services import UserTokens

__all__ = ["ADMIN_TOKEN_FILE", "ADMIN_TOKEN_VALID_FOR", "ensure_admin_token"]

log = structlog.get_logger(__name__)

ADMIN_TOKEN_FILE: Final = "admin-user-token"  # noqa: S105 (a file name, not a secret)
ADMIN_TOKEN_VALID_FOR: Final = 10 * 365 * 24 * 3600  # Kuma's: 24*365*10 hours
_OWNER_ONLY: Final = 0o600


def _read(path: Path) -> str | None:
    """The file's token after making it owner-only; None when there is no file."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return None
    if mode != _OWNER_ONLY:
        os.chmod(path, _OWNER_ONLY)
        log.warning("api.admin_token.mode_fixed", path=str(path), was=oct(mode), now=oct(_OWNER_ONLY))
    return path.read_text(encoding="utf-8", errors="replace").strip()


def _write(path: Path, token: str) -> None:
    """Writes `token` to `path` owner-only from the first byte (a new file, renamed over the old one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _OWNER_ONLY)
    try:
        os.write(fd, token.encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


async def ensure_admin_token(tokens: UserTokens, data_dir: Path) -> Path | None:
    """Makes `<data_dir>/admin-user-token` hold a valid admin token, mode 0600; returns its path. None when the
    store or the file cannot be used: logged, not fatal (as in Kuma), since the API still serves tokens issued
    earlier and, with --api-localhost-is-admin, local callers."""
    try:
        return await _ensure(tokens, data_dir / ADMIN_TOKEN_FILE)
    except (StoreError, OSError) as exc:
        log.error("api.admin_token.failed", path=str(data_dir / ADMIN_TOKEN_FILE), error=str(exc))
        return None


async def _ensure(tokens: UserTokens, path: Path) -> Path:
    existing = await anyio.to_thread.run_sync(_read, path)
    reason = "no token file yet"
    if existing:
        try:
            claims = await tokens.verify(existing)
        except TokenError as exc:
            reason = f"the token there is not valid: {exc}"
        else:
            if ADMIN_GROUP in claims.groups:
                log.info("api.admin_token.kept", path=str(path))
                return path
            reason = f"the token there is not in group {ADMIN_GROUP}"
    elif existing is not None:
        reason = "the token file is empty"
    token = await tokens.issue(ADMIN_NAME, [ADMIN_GROUP], ADMIN_TOKEN_VALID_FOR)
    await anyio.to_thread.run_sync(_write, path, token)
    log.info("api.admin_token.written", path=str(path), reason=reason)
    return path
