"""Imported only by the multiprocessing fork server of a build: it leaves, tidily, when the build does.

The kernel sends SIGTERM when the build process dies (even by kill -9); the fork server then removes
the build's multiprocessing folder (its listening socket) and exits, and its workers, which asked
for SIGKILL on their parent's death, follow.
"""

import os
import shutil
import signal
import sys

from reportgen.errors import QUIET_ENV_FLAG
from reportgen.processes import BUILD_PID_ENV, MP_TEMPDIR_ENV, MP_TEMPDIR_PREFIX, die_with_parent

_SERVER = os.getpid()
_FOLDER = os.environ.get(MP_TEMPDIR_ENV)


def _quiet_start_up_failures(kind: type[BaseException], value: BaseException, tb: object) -> None:
    """Print a worker's start-up failure only with --verbose.

    A worker forked just as the build is interrupted fails to unpickle what the build has already
    released; its traceback would sit beside the build's one-line message. The build itself reports a
    worker that could not start (exit 4, one line). Forked workers inherit this hook.
    """
    if os.environ.get(QUIET_ENV_FLAG):
        return
    sys.__excepthook__(kind, value, tb)  # type: ignore[arg-type]


def _leave(signum: int, frame: object) -> None:
    if os.getpid() != _SERVER:  # a forked worker that has not reset the handler yet
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    if _FOLDER and os.path.basename(_FOLDER).startswith(MP_TEMPDIR_PREFIX):
        shutil.rmtree(_FOLDER, ignore_errors=True)
    os._exit(0)


sys.excepthook = _quiet_start_up_failures
signal.signal(signal.SIGTERM, _leave)
die_with_parent(signal.SIGTERM)
if str(os.getppid()) != os.environ.get(BUILD_PID_ENV, str(os.getppid())):
    _leave(signal.SIGTERM, None)  # the build died while this server was still importing
