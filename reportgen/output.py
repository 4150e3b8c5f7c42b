"""Write a report folder atomically: build beside the target, rename into place when complete."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

from reportgen.errors import OutputError, printable

MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 16 << 20


def preflight(target: Path, force: bool) -> None:
    """Fail early, before any heavy work, if the target cannot be written."""
    try:
        os.lstat(target)
    except ValueError:
        raise OutputError(f"{printable(str(target))}: invalid folder name (NUL byte)") from None
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise OutputError(f"{printable(str(target))}: output folder cannot be written: {exc.strerror or exc}") from None
    # First undo what a killed build left, so that a report it moved aside counts as existing.
    remove_stale(target)
    if target.exists() and not target.is_dir():
        raise OutputError(f"{target}: output path exists and is not a folder")
    if target.exists() and not force:
        raise OutputError(f"{target}: output folder already exists; pass --force to replace it")
    if target.exists():
        check_replaceable(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=f".{target.name}.probe-{os.getpid()}-", dir=target.parent)
        os.rmdir(probe)
    except OSError as exc:
        raise OutputError(f"{target}: output folder cannot be written: {exc.strerror or exc}") from None


def check_replaceable(target: Path) -> None:
    """Refuse to replace a folder unless it is empty or a report reportgen wrote (and nothing else).

    --force deletes the old folder; a mistyped --output must not take a thesis folder with it.
    """
    try:
        entries = sorted(p.name for p in target.iterdir())
    except OSError as exc:
        raise OutputError(f"{target}: cannot list the existing folder ({exc.strerror or exc})") from None
    if not entries:
        return
    outputs = _manifest_outputs(target / MANIFEST)
    if outputs is None:
        raise OutputError(
            f"{target}: exists and is not a report folder (no reportgen {MANIFEST}); "
            "--force replaces only a report or an empty folder"
        )
    foreign = [name for name in entries if name != MANIFEST and name not in outputs]
    if foreign:
        shown = ", ".join(printable(n, 60) for n in foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise OutputError(f"{target}: holds files reportgen did not write ({shown}); move them away first")


def _manifest_outputs(path: Path) -> set[str] | None:
    """Return the output names a reportgen manifest lists, or None if path is not one."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_MANIFEST_BYTES:
            return None
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or "manifest_version" not in doc or not isinstance(doc.get("outputs"), dict):
        return None
    return {str(name) for name in doc["outputs"]}


def ensure_manifest(files: dict[str, bytes]) -> dict[str, bytes]:
    """Return files with a manifest.json listing them, when the caller wrote none (diff reports)."""
    if MANIFEST in files:
        return files
    doc = {
        "manifest_version": "1.0",
        "tool": "reportgen",
        "outputs": {name: {"sha256": sha256_bytes(data), "size": len(data)} for name, data in sorted(files.items())},
    }
    return {**files, MANIFEST: (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()}


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


RENAME_EXCHANGE = 2  # linux/fs.h
AT_FDCWD = -100


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2); return False where that is not possible.

    With two renames a crash between them leaves no report at the target until the next build puts the
    previous one back; an exchange leaves either the old folder or the new one there, at every instant.
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.renameat2
    except (OSError, AttributeError):
        return False
    call.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    done = call(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0
    return done  # EINVAL/ENOSYS (a file system without exchange): the caller renames twice


def sha256_bytes(data: bytes) -> str:
    """Return the hex SHA-256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def write_atomically(target: Path, files: dict[str, bytes], force: bool) -> None:
    """Write files into target so that readers see the old folder or the complete new one."""
    preflight(target, force)
    files = ensure_manifest(files)
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
        if target.exists() and exchange(tmp, target):
            # One atomic step: target is now the new report and tmp holds the previous one.
            old = tmp
        else:
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
