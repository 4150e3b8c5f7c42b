"""Command line: reportgen build | inspect | diff | history, one-line errors, documented exit codes."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import webbrowser
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reportgen import __version__
from reportgen.errors import EXIT_CODES, QUIET_ENV_FLAG, ComparisonError, ReportgenError, UsageError, printable
from reportgen.vocab import EXECUTOR_KINDS, OUTPUT_FORMATS

EPILOG = "exit codes:\n" + "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES.items())

BUILD_EXAMPLE = """examples:
  reportgen build configs/quickstart.yaml
  reportgen build configs/vgg_vs_resnet.yaml --output reports/v1.3 --format html,json --force
"""
INSPECT_EXAMPLE = """examples:
  reportgen inspect model.safetensors
  reportgen inspect weights.weights.h5 --filter 'block5_*' --json
"""
DIFF_EXAMPLE = """examples:
  reportgen diff reports/v1.2 reports/v1.3 --output reports/diff-v1.2-v1.3
  reportgen diff reports/v1.2 reports/v1.3 --fail-on critical   # exit 10 on regressions, NaN, critical alerts
"""
HISTORY_EXAMPLE = """examples:
  reportgen history reports/v1.0 reports/v1.1 reports/v1.2 reports/v1.3 --output reports/history
  reportgen history $(ls -d reports/v* | sort -V) -o reports/history -f html,json --force
"""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors become UsageError (exit code 2, one line)."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def _formats(text: str) -> tuple[str, ...]:
    items = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [x for x in items if x not in OUTPUT_FORMATS]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"formats are {', '.join(OUTPUT_FORMATS)} (got {text!r})")
    return items


def make_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand."""
    parser = _Parser(
        prog="reportgen",
        description="Reports on neural-network weights: statistics, initialisation checks, verdicts.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"reportgen {__version__}")
    common = _Parser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    common.add_argument("-v", "--verbose", action="store_true", help="print details and tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    b = sub.add_parser(
        "build",
        parents=[common],
        help="build a report from a YAML config",
        epilog=BUILD_EXAMPLE + "\n" + EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    b.add_argument("config", help="YAML config file")
    b.add_argument("-o", "--output", help="output folder (default: the config's 'output')")
    b.add_argument("-f", "--format", type=_formats, help="comma-separated: html,pdf,json (default: the config's)")
    b.add_argument("--force", action="store_true", help="replace an existing output folder")
    b.add_argument("-j", "--workers", type=int, default=0, help="parallel workers (default: one per core)")
    b.add_argument(
        "--executor",
        choices=EXECUTOR_KINDS,
        help="where tensors are analysed (default: processes for files, threads for keras applications)",
    )
    b.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="Dask scheduler, e.g. tls://host:8786 (implies dask; default: $REPORTGEN_SCHEDULER). "
        "Its workers run code in this process: name only a cluster you trust",
    )
    b.add_argument("--open", action="store_true", help="open the HTML report in a browser when done")

    i = sub.add_parser(
        "inspect",
        parents=[common],
        help="quick look at a weights file, no config needed",
        epilog=INSPECT_EXAMPLE + "\n" + EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    i.add_argument(
        "path",
        help="weights file or folder (.keras, .h5, .weights.h5, .safetensors, ...), pkg:PACKAGE/FILE or hf:ORG/NAME",
    )
    i.add_argument("--json", action="store_true", help="print JSON instead of a table")
    i.add_argument("--filter", metavar="GLOB", help="only layers whose name matches GLOB")

    d = sub.add_parser(
        "diff",
        parents=[common],
        help="compare two reports (folders or stats.json files)",
        epilog=DIFF_EXAMPLE + "\n" + EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument("old", help="earlier report folder or stats.json")
    d.add_argument("new", help="later report folder or stats.json")
    d.add_argument("-o", "--output", help="folder for the comparison report (default: print a summary)")
    d.add_argument("-f", "--format", type=_formats, help="comma-separated: html,pdf,json")
    d.add_argument("--force", action="store_true", help="replace an existing output folder")
    d.add_argument(
        "--fail-on",
        choices=("warning", "critical"),
        help="exit 10 when the new release brings alerts of this severity or worse, or verdict regressions",
    )

    h = sub.add_parser(
        "history",
        parents=[common],
        help="follow every model across releases (folders or stats.json, in release order)",
        epilog=HISTORY_EXAMPLE + "\n" + EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    h.add_argument("reports", nargs="+", help="report folders or stats.json files, oldest first")
    h.add_argument("-o", "--output", required=True, help="folder for the history report")
    h.add_argument("-f", "--format", type=_formats, help="comma-separated: html,pdf,json")
    h.add_argument("--force", action="store_true", help="replace an existing output folder")
    return parser


def _progress_printer(quiet: bool) -> Any:
    """Return a progress callback: a rich bar on a terminal, nothing otherwise."""
    if quiet or not sys.stderr.isatty():
        return None, None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
    )
    task = bar.add_task("starting", total=None)

    def update(message: str, done: int, total: int) -> None:
        from rich.markup import escape

        # Layer names in the message come from weights files: no markup, no control characters.
        bar.update(task, description=escape(printable(message, 60)), completed=done, total=total)

    return bar, update


def cmd_build(args: argparse.Namespace) -> int:
    """Build a report."""
    from reportgen.config import SCHEDULER_ENV, load_config
    from reportgen.pipeline import BuildOptions, build

    scheduler = args.scheduler or os.environ.get(SCHEDULER_ENV) or None
    if scheduler and args.executor not in (None, "dask"):
        origin = "--scheduler" if args.scheduler else f"${SCHEDULER_ENV}"
        raise UsageError(f"reportgen build: {origin} needs --executor dask, not {args.executor}")
    loaded = load_config(args.config)
    opts = BuildOptions(
        output=args.output,
        formats=args.format,
        force=args.force,
        workers=args.workers,
        executor=args.executor,
        scheduler=scheduler,
    )
    bar, update = _progress_printer(args.quiet)
    if bar is not None:
        with bar:
            result = build(loaded, opts, update)
    else:
        result = build(loaded, opts, None)
    if not args.quiet:
        for m in result.report.models:
            print(printable(f"{m.name}: {m.diagnosis.summary}", MAX_MESSAGE_CHARS))
        print(f"wrote {printable(str(result.out_dir), MAX_MESSAGE_CHARS)}/ ({', '.join(result.files)})")
        if args.verbose:
            print("timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items()))
    if args.open and (result.out_dir / "report.html").exists():
        webbrowser.open((result.out_dir / "report.html").resolve().as_uri())
    if result.compare_error is not None:
        raise ComparisonError(result.compare_error)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """Print a weights file's layers and statistics."""
    from reportgen.inspect import run_inspect

    return run_inspect(_weights_path(args.path), as_json=args.json, pattern=args.filter, quiet=args.quiet)


def _weights_path(value: str) -> Path:
    """Resolve a path given on the command line: a file or folder, pkg:PACKAGE/inside, or hf:ORG/NAME."""
    from reportgen.config import resolve_package_path

    if value.startswith("pkg:"):
        return resolve_package_path(value[4:], Path("command line"))
    if value.startswith("hf:"):
        from reportgen.sources.hf import resolve_hf

        return resolve_hf(value)
    return Path(value)


def cmd_diff(args: argparse.Namespace) -> int:
    """Compare two reports."""
    from reportgen.releases import run_diff

    return run_diff(
        args.old,
        args.new,
        output=args.output,
        formats=args.format,
        force=args.force,
        quiet=args.quiet,
        fail_on=args.fail_on,
    )


def cmd_history(args: argparse.Namespace) -> int:
    """Follow the models of several reports across releases."""
    from reportgen.releases import run_history

    return run_history(args.reports, output=args.output, formats=args.format, force=args.force, quiet=args.quiet)


INTERRUPTED = "reportgen: interrupted; no partial output was left"
MAX_MESSAGE_CHARS = 2000
# Set for the run (and so inherited by worker processes) unless --verbose, then restored.
QUIET_ENV = {"PYTHONWARNINGS": "ignore", "TF_CPP_MIN_LOG_LEVEL": "3", QUIET_ENV_FLAG: "1"}
COMMANDS = {"build": cmd_build, "inspect": cmd_inspect, "diff": cmd_diff, "history": cmd_history}


class _Interrupts:
    """Remembers a Ctrl-C, so that an error it caused on its way out still reads as the interrupt.

    A KeyboardInterrupt that lands inside an extension module's import, for instance, surfaces as an
    ImportError; the user pressed Ctrl-C all the same and should get exit code 130.
    """

    def __init__(self) -> None:
        self.seen = False

    def handler(self, signum: int, frame: object) -> None:
        self.seen = True
        raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    import signal
    import threading
    import warnings

    interrupts = _Interrupts()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, interrupts.handler)
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in args or "--verbose" in args
    saved_env = {k: os.environ.get(k) for k in QUIET_ENV}
    try:
        with warnings.catch_warnings():
            if not verbose:
                # Library warnings (h5py, NumPy, multiprocessing's resource tracker in the worker
                # processes, TensorFlow's start-up log) would sit beside the one-line error.
                warnings.simplefilter("ignore")
                for key, value in QUIET_ENV.items():
                    os.environ.setdefault(key, value)
            return _run(argv, interrupts, verbose)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        for key, old in saved_env.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def entry() -> None:
    """Console entry point: run main() and exit with its code.

    After a Ctrl-C, CPython sometimes ends the process by re-raising SIGINT at shutdown (its record of
    an unhandled KeyboardInterrupt can be left set by a nested interpreter call even though main()
    handled it), so the documented exit code 130 would read as death by signal. The interrupted path
    has already cleaned up, so it flushes and leaves with 130 directly.
    """
    code = main()
    if code == 130:
        from reportgen.processes import remove_private_mp_tempdir

        remove_private_mp_tempdir()  # os._exit skips atexit
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(code)


def _run(argv: Sequence[str] | None, interrupts: _Interrupts, verbose: bool) -> int:
    """Parse the arguments, run the command, and turn every failure into its one line and exit code."""
    try:
        parser = make_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        return COMMANDS[args.command](args)
    except ReportgenError as exc:
        if interrupts.seen:
            print(INTERRUPTED, file=sys.stderr)
            return 130
        for line in exc.message.splitlines() or [type(exc).__name__]:
            # Names inside the message come from files and configs: escape, never emit, control bytes.
            print(f"reportgen: error: {printable(line, MAX_MESSAGE_CHARS)}", file=sys.stderr)
        if verbose:
            traceback.print_exc()
        return exc.exit_code
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: stop quietly, as Unix tools do.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: one line, the traceback on request
        if interrupts.seen:
            print(INTERRUPTED, file=sys.stderr)
            return 130
        what = printable(" ".join(str(exc).split()), MAX_MESSAGE_CHARS)
        hint = "(run with --verbose for details)"
        print(f"reportgen: internal error: {type(exc).__name__}: {what} {hint}", file=sys.stderr)
        if verbose:
            traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
