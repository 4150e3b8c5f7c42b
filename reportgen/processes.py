"""The life of a worker process: one BLAS thread, gone with its parent, a private multiprocessing folder.

A build's worker processes must never outlive it (kill -9 included), never print over its one-line
error, and compute with one BLAS thread so that numbers do not depend on the worker count.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Generator
from contextlib import contextmanager

PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_POLL_S = 0.5  # where no pidfd exists, how often a worker checks that its parent still runs
MP_TEMPDIR_ENV = "REPORTGEN_MP_TEMPDIR"  # tells the fork server which folder to remove when it must go
BUILD_PID_ENV = "REPORTGEN_BUILD_PID"  # lets the fork server notice a build that died before it was ready
# As short as multiprocessing's own "pymp-": a socket path inside it must stay under 108 bytes.
MP_TEMPDIR_PREFIX = "rgmp-"

_blas_limited = False


def load_blas() -> None:
    """Load every BLAS the work calls, so that a thread limit set now covers them all.

    threadpoolctl limits the libraries loaded when it is called; SciPy bundles an OpenBLAS of its own
    (used by eigvalsh and syrk in spectral.py) that a later import would start with one thread per core.
    """
    import scipy.linalg  # noqa: F401


def limit_blas() -> None:
    """Keep BLAS to one thread in this worker process; the pool already uses every core."""
    global _blas_limited
    if not _blas_limited:
        from threadpoolctl import threadpool_limits

        load_blas()

        threadpool_limits(limits=1, user_api="blas")
        _blas_limited = True


def process_init() -> None:
    """Prepare a pool worker: Ctrl-C is the parent's, the worker ends with its parent, BLAS on one thread."""
    # Ctrl-C reaches the whole process group; the parent alone decides what to cancel.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent()
    limit_blas()


def exit_with_parent() -> None:
    """End this worker process as soon as the process that started the pool is gone.

    A worker waits on a queue whose write end it holds itself, so it never sees the parent leave: after
    a kill -9 of the build it would wait forever, holding the terminal's pipes (`| tee log` would hang).
    A pidfd becomes readable when the process exits; where there is none, the parent is polled.
    """
    import multiprocessing

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the fork server's handler, inherited by fork
    die_with_parent()
    parent = multiprocessing.parent_process()
    if parent is None or parent.pid is None:
        return
    pid = parent.pid
    try:
        fd: int | None = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):
        fd = None

    def watch() -> None:
        if fd is not None:
            import select

            select.select([fd], [], [])
        else:
            import time

            while _alive(pid):
                time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="reportgen-parent-watch", daemon=True).start()


def die_with_parent(signum: int = signal.SIGKILL) -> None:
    """Ask the kernel to send signum to this process when its parent exits (Linux prctl; elsewhere nothing).

    Unlike a watching thread this needs no GIL, so a worker busy inside a long LAPACK call goes too.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent left before the request was in place
        os._exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def private_mp_tempdir() -> None:
    """Give multiprocessing a temporary folder of this build's, which the fork server removes.

    The fork server listens on a socket in that folder. multiprocessing deletes it at a normal exit,
    but not after kill -9 or os._exit; the fork server, told of its parent's death by the kernel,
    removes it then (reportgen/_forkserver.py).
    """
    import atexit
    import multiprocessing.process
    import tempfile

    config = multiprocessing.process.current_process()._config  # type: ignore[attr-defined]
    if config.get("tempdir"):
        return
    path = tempfile.mkdtemp(prefix=MP_TEMPDIR_PREFIX)
    config["tempdir"] = path
    os.environ[MP_TEMPDIR_ENV] = path
    os.environ[BUILD_PID_ENV] = str(os.getpid())
    atexit.register(remove_private_mp_tempdir)


def remove_private_mp_tempdir() -> None:
    """Remove the folder private_mp_tempdir made (at exit, also on the os._exit path after Ctrl-C)."""
    import shutil

    path = os.environ.get(MP_TEMPDIR_ENV)
    if path and os.environ.get(BUILD_PID_ENV) == str(os.getpid()):
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def quiet_start() -> Generator[None, None, None]:
    """Start worker processes with SIGINT blocked, so a Ctrl-C during their start-up is not theirs.

    Ctrl-C goes to the whole process group. A worker still importing when it arrives would print a
    KeyboardInterrupt traceback before its initializer could ignore the signal; a blocked signal is
    inherited blocked across fork and exec, and in this process it is delivered when unblocked.
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
