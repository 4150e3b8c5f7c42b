"""One exception root for everything reportgen reports to a user, with exit codes."""

from __future__ import annotations

# Set by the CLI unless --verbose, and inherited by worker processes: library log lines and warnings
# stay out of the one-line error.
QUIET_ENV_FLAG = "REPORTGEN_QUIET"


class ReportgenError(Exception):
    """A failure that the CLI prints as one line and turns into an exit code."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(ReportgenError):
    """Wrong command-line arguments."""

    exit_code = 2


class ConfigError(ReportgenError):
    """The YAML config is missing, malformed or fails the schema."""

    exit_code = 3

    def __init__(self, messages: list[str] | str) -> None:
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        super().__init__("\n".join(self.messages))


class SourceError(ReportgenError):
    """A weights source cannot be found, read, or trusted."""

    exit_code = 4


class SelectionError(ReportgenError):
    """A layer selector matches nothing or points outside the model."""

    exit_code = 5


class NetworkError(SourceError):
    """Weights had to be downloaded and the network is not reachable."""

    exit_code = 6


class OutputError(ReportgenError):
    """The output folder cannot be written, or exists without --force."""

    exit_code = 7


class RenderError(ReportgenError):
    """A template or the PDF engine failed."""

    exit_code = 8


class ComparisonError(ReportgenError):
    """The build wrote its report, but the comparison with compare_to failed."""

    exit_code = 9


class GateFailure(ReportgenError):
    """`reportgen diff --fail-on` found alerts of that severity or verdict regressions in the new release."""

    exit_code = 10


EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "unexpected internal error (a bug: please report it with the traceback from --verbose)",
    2: "usage error: wrong command-line arguments",
    3: "config error: missing file, YAML syntax, or schema violation",
    4: "source error: a weights file or report (stats.json) is missing, unreadable, unsafe or of an unknown format",
    5: "selection error: a layer selector matched nothing or is out of range",
    6: "network error: weights must be downloaded and the network is unreachable",
    7: "output error: the output folder cannot be written or already exists (use --force)",
    8: "render error: HTML/PDF rendering failed",
    9: "comparison failed: the report was written, its comparison with compare_to was not",
    10: "release gate: diff --fail-on found alerts of that severity or verdict regressions in the new release",
    130: "interrupted (Ctrl-C); no partial output is left behind",
}


def printable(text: str, limit: int = 200) -> str:
    """Return text with control and other unprintable characters escaped, cut to limit characters.

    Names from weights files and paths can hold terminal escape sequences, newlines or lone
    surrogates (non-UTF-8 file names); escaped, they show what is there and do nothing.
    """
    out = "".join(c if c.isprintable() and not 0xD800 <= ord(c) <= 0xDFFF else ascii(c)[1:-1] for c in text[:limit])
    return out + ("…" if len(text) > limit else "")
