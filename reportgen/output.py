"""Write a report folder atomically: build beside the target, rename into place when complete."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from reportgen.errors import OutputError


def preflight(target: Path, force: bool) -> None:
    """Fail early, before any heavy work, if the target cannot be written."""
    if target.exists() and not target.is_dir():
        raise OutputError(f"{target}: output path exists and is not a folder")
    if target.exists() and not force:
        raise OutputError(f"{target}: output folder already exists; pass --force to replace it")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=f".{target.name}.probe-", dir=target.parent)
        os.rmdir(probe)
    except OSError as exc:
        raise OutputError(f"{target}: output folder cannot be written: {exc.strerror or exc}") from None


def sha256_bytes(data: bytes) -> str:
    """Return the hex SHA-256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def write_atomically(target: Path, files: dict[str, bytes], force: bool) -> None:
    """Write files into target so that readers see the old folder or the complete new one."""
    preflight(target, force)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    old: Path | None = None
    try:
        for name, data in files.items():
            path = tmp / name
            with open(path, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o755)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.rmdir(old)
            os.rename(target, old)
        os.rename(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists() and not target.exists():
            os.rename(old, target)
        raise OutputError(f"{target}: writing the report failed: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists() and not target.exists():
            os.rename(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
