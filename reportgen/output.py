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
    # First undo what a killed build left, so that a report it moved aside counts as existing.
    remove_stale(target)
    if target.exists() and not target.is_dir():
        raise OutputError(f"{target}: output path exists and is not a folder")
    if target.exists() and not force:
        raise OutputError(f"{target}: output folder already exists; pass --force to replace it")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=f".{target.name}.probe-{os.getpid()}-", dir=target.parent)
        os.rmdir(probe)
    except OSError as exc:
        raise OutputError(f"{target}: output folder cannot be written: {exc.strerror or exc}") from None


def _alive(pid: int) -> bool:
    """Return True if a process with this id exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def remove_stale(target: Path) -> None:
    """Remove the hidden .NAME.tmp-PID-* / .NAME.old-PID-* folders a killed build left beside target."""
    prefix = f".{target.name}."
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return
    for path in entries:
        if not path.name.startswith(prefix) or not path.is_dir() or path.is_symlink():
            continue
        kind, _, rest = path.name[len(prefix) :].partition("-")
        pid = rest.split("-", 1)[0]
        # Another build of the same target may be writing right now: leave a live process's folders.
        if kind not in ("tmp", "old", "probe") or not pid.isdigit() or _alive(int(pid)):
            continue
        if kind == "old" and not target.exists():
            # Killed between its two renames: the previous report is here; put it back.
            os.rename(path, target)
            continue
        shutil.rmtree(path, ignore_errors=True)


def sha256_bytes(data: bytes) -> str:
    """Return the hex SHA-256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def write_atomically(target: Path, files: dict[str, bytes], force: bool) -> None:
    """Write files into target so that readers see the old folder or the complete new one."""
    preflight(target, force)
    pid = os.getpid()
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{pid}-", dir=target.parent))
    old: Path | None = None
    try:
        for name, data in files.items():
            path = tmp / name
            with open(path, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o755)  # noqa: S103 - mkdtemp makes 0700; a report folder is meant to be shared
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-{pid}-", dir=target.parent))
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
