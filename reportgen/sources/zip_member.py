"""Read members of a zip archive (a .keras file) in place, without leaving copies on disk.

A stored member (Keras writes its archives uncompressed) is read straight from the archive through a
window onto its bytes. A compressed member is inflated into an unnamed temporary file (O_TMPFILE on
Linux), which has no name to leave behind: the kernel frees it when the last descriptor closes, also
after Ctrl-C or kill -9.
"""

from __future__ import annotations

import errno
import io
import os
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import IO

from reportgen.errors import SourceError

# A member may declare at most this many bytes (config.json is a few hundred KB in practice).
MAX_CONFIG_BYTES = 64 << 20
MAX_WEIGHTS_BYTES = 256 << 30
# A compressed member may expand at most this much beyond 1 MiB: HDF5 weights deflate to 0.9x of
# their size, all-zero tensors to 0.001x, so a stricter ratio would refuse no real archive either.
MAX_ZIP_RATIO = 100
ZIP_RATIO_FLOOR = 1 << 20

# What the zipfile module raises for a damaged archive: bad CRC, unknown compression, encryption,
# corrupt deflate stream, truncated headers.
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, EOFError, ValueError, struct.error)
_LOCAL_HEADER = struct.Struct("<4s22xHH")


class MemberWindow(io.RawIOBase):
    """A read-only, seekable view of size bytes at offset start of an open file descriptor."""

    def __init__(self, fd: int, start: int, size: int) -> None:
        super().__init__()
        self._fd = fd
        self._start = start
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        """Return True: the window can be read."""
        return True

    def seekable(self) -> bool:
        """Return True: the window can seek."""
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move within the window."""
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        """Return the position within the window."""
        return self._pos

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        """Fill buffer from the window at the current position; 0 at its end."""
        view = memoryview(buffer).cast("B")
        want = min(len(view), max(0, self._size - self._pos))
        done = 0
        while done < want:
            got = os.preadv(self._fd, [view[done:want]], self._start + self._pos + done)
            if got <= 0:
                break
            done += got
        self._pos += done
        return done

    def close(self) -> None:
        """Close the descriptor."""
        if not self.closed:
            os.close(self._fd)
        super().close()


def member_info(zf: zipfile.ZipFile, name: str, label: str, cap: int) -> zipfile.ZipInfo:
    """Return a member's entry after checking its declared size and expansion."""
    try:
        member = zf.getinfo(name)
    except KeyError:
        raise SourceError(f"{label}: archive member {name} missing") from None
    if member.flag_bits & 0x1:
        raise SourceError(f"{label}: archive member {name} is encrypted; refused")
    if member.file_size > cap:
        raise SourceError(f"{label}: archive member {name} declares {member.file_size} bytes (cap {cap})")
    if member.compress_type != zipfile.ZIP_STORED and member.file_size > max(
        ZIP_RATIO_FLOOR, MAX_ZIP_RATIO * member.compress_size
    ):
        raise SourceError(
            f"{label}: archive member {name} expands {member.file_size} bytes from {member.compress_size}; "
            f"refused (more than {MAX_ZIP_RATIO}x)"
        )
    return member


def read_small(zf: zipfile.ZipFile, name: str, label: str, cap: int) -> bytes:
    """Return a small member's bytes, never more than it declares."""
    member = member_info(zf, name, label, cap)
    out = bytearray()
    try:
        _copy(zf, member, out.extend, label)
    except ZIP_ERRORS as exc:
        raise SourceError(f"{label}: archive member {name} is damaged ({_why(exc)})") from None
    return bytes(out)


def open_member(
    path: Path, zf: zipfile.ZipFile, name: str, label: str, cap: int
) -> tuple[io.RawIOBase | IO[bytes], int]:
    """Return a readable, seekable file object over a member and its size, leaving no file behind."""
    member = member_info(zf, name, label, cap)
    if member.compress_type == zipfile.ZIP_STORED:
        return _stored_window(path, member, label), member.file_size
    spill = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the caller, who closes it
    try:
        _copy(zf, member, spill.write, label)
        spill.flush()
        spill.seek(0)
    except ZIP_ERRORS as exc:
        spill.close()
        raise SourceError(f"{label}: archive member {name} is damaged ({_why(exc)})") from None
    except OSError as exc:
        spill.close()
        why = "no space left in the temporary folder" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise SourceError(f"{label}: cannot inflate archive member {name} ({why})") from None
    except BaseException:
        spill.close()
        raise
    return spill, member.file_size


def _stored_window(path: Path, member: zipfile.ZipInfo, label: str) -> MemberWindow:
    from reportgen.sources.safety import open_regular

    fd = open_regular(path)
    try:
        size = os.fstat(fd).st_size
        head = os.pread(fd, _LOCAL_HEADER.size, member.header_offset)
        if len(head) < _LOCAL_HEADER.size:
            raise SourceError(f"{label}: archive member {member.filename}: local header beyond the end of the file")
        magic, name_len, extra_len = _LOCAL_HEADER.unpack(head)
        if magic != b"PK\x03\x04":
            raise SourceError(f"{label}: archive member {member.filename}: bad local header")
        start = member.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        if member.compress_size != member.file_size or start + member.file_size > size:
            raise SourceError(f"{label}: archive member {member.filename}: data runs past the end of the archive")
    except BaseException:
        os.close(fd)
        raise
    return MemberWindow(fd, start, member.file_size)


def _copy(zf: zipfile.ZipFile, member: zipfile.ZipInfo, write: object, label: str) -> None:
    # The central directory can lie about sizes; count what actually comes out.
    written = 0
    with zf.open(member) as src:
        while chunk := src.read(1 << 20):
            written += len(chunk)
            if written > member.file_size:
                raise SourceError(f"{label}: archive member {member.filename} is longer than it declares")
            write(chunk)  # type: ignore[operator]


def _why(exc: BaseException) -> str:
    if isinstance(exc, zlib.error):
        return "corrupt compressed data"
    if isinstance(exc, NotImplementedError):
        return "unsupported compression method"
    if isinstance(exc, RuntimeError):
        return "encrypted or unreadable"
    if isinstance(exc, zipfile.BadZipFile) and "CRC" in str(exc):
        return "CRC check failed"
    return type(exc).__name__
