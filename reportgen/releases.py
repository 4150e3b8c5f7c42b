"""Run `reportgen diff` and `reportgen history`: load the reports, compare, print, write, gate."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reportgen.diff import DiffModel, compute_diff, gate_failures
from reportgen.errors import GateFailure, UsageError, printable
from reportgen.history import HistoryModel, compute_history
from reportgen.stats_json import Severity, load
from reportgen.vocab import OUTPUT_FORMATS

ALL_FORMATS = OUTPUT_FORMATS


def _fmt(value: float | None, spec: str = ".3g") -> str:
    return "-" if value is None else format(value, spec)


def _where(layer: str, param: str | None) -> str:
    return f"{layer}/{param}" if param else layer


def diff_summary(diff: DiffModel) -> list[str]:
    """Return the terminal summary of a comparison: releases, what changed, alerts."""
    lines = [
        f"old: {diff.old.name} ({diff.old.title or 'untitled'}, {diff.old.generated_at or '?'})",
        f"new: {diff.new.name} ({diff.new.title or 'untitled'}, {diff.new.generated_at or '?'})",
        f"{diff.changed_count} of {diff.tensor_count} matched tensors changed, "
        f"{diff.tensor_count - diff.changed_count} unchanged",
    ]
    if diff.unmatched_old or diff.unmatched_new:
        lines.append(f"models removed: {list(diff.unmatched_old)}; models added: {list(diff.unmatched_new)}")
    for m in diff.models:
        lines.append(
            f"model {m.name}: {len(m.changed)} of {len(m.tensors)} tensors changed; layers +{len(m.added_layers)} "
            f"-{len(m.removed_layers)}; tensors +{len(m.added_tensors)} -{len(m.removed_tensors)}, "
            f"{len(m.reshaped_tensors)} reshaped; {m.weights_note}"
        )
        for title, names in (("added layers", m.added_layers), ("removed layers", m.removed_layers)):
            if names:
                shown = ", ".join(names[:8]) + (f", … ({len(names) - 8} more)" if len(names) > 8 else "")
                lines.append(f"  {title}: {shown}")
        for r in m.reshaped_tensors:
            lines.append(f"  reshaped: {r.layer}/{r.param} {r.old_shape} -> {r.new_shape}")
        if m.verdict_changes:
            lines.append("  verdicts: " + ", ".join(f"{v.layer} {v.old} -> {v.new}" for v in m.verdict_changes))
        top = m.top()
        if top:
            lines.append("  most changed:")
            width = max(len(f"{t.layer}/{t.param}") for t in top)
            for t in top:
                lines.append(
                    f"    {t.layer + '/' + t.param:<{width}}  rel {_fmt(t.rel_change)}  cos {_fmt(t.cosine, '.4f')}"
                    f"  std x{_fmt(t.std_ratio)}  mean {_fmt(t.mean_delta, '+.3g')}"
                )
    counts = diff.alert_counts()
    lines.append(f"alerts: {counts['critical']} critical, {counts['warning']} warning")
    for a in diff.alerts[:10]:
        lines.append(f"  {a.severity} {a.model} {_where(a.layer, a.param)}: {a.message}")
    if len(diff.alerts) > 10:
        lines.append(f"  … {len(diff.alerts) - 10} more (write a report with --output to see all)")
    if diff.new_alerts:
        lines.append(f"new build alerts in {diff.new.name}: {len(diff.new_alerts)}")
        for b in diff.new_alerts[:5]:
            lines.append(f"  {b.severity} {b.model} {_where(b.layer, b.param)}: {b.message}")
    return lines


def run_diff(
    old: str | Path,
    new: str | Path,
    *,
    output: str | Path | None = None,
    formats: tuple[str, ...] | None = None,
    force: bool = False,
    quiet: bool = False,
    fail_on: Severity | None = None,
) -> int:
    """Compare two reports; write DIR/diff.* with output, else print a summary; gate with fail_on."""
    from reportgen.output import preflight, write_atomically

    target = Path(output) if output is not None else None
    if target is not None:
        preflight(target, force)
    diff = compute_diff(load(old), load(new), old_label=str(old), new_label=str(new))
    if target is not None:
        from reportgen.render.diff_report import render_diff

        files = render_diff(diff, tuple(formats or ALL_FORMATS))
        write_atomically(target, files, force)
    if not quiet:
        print("\n".join(printable(line, 2000) for line in diff_summary(diff)))  # names come from files
        if target is not None:
            print(f"wrote {target}/")
    failures = gate_failures(diff, fail_on) if fail_on else []
    if failures:
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise GateFailure(f"release gate --fail-on {fail_on}: {failures[0]}{more}")
    return 0


def history_summary(h: HistoryModel) -> list[str]:
    """Return the terminal summary of a release history."""
    lines = [f"{len(h.releases)} releases: {', '.join(r.name for r in h.releases)}"]
    for m in h.models:
        present = sum(n is not None for n in m.names)
        wrong = "nothing went wrong"
        if m.first_wrong is not None:
            wrong = f"first went wrong in {h.releases[m.first_wrong].name}"
        lines.append(
            f"model {m.name}: in {present} releases, {len(m.layers)} layers, {len(m.moves)} moves, "
            f"{len(m.problems)} problems; {wrong}"
        )
    return lines


def run_history(
    reports: Sequence[str | Path],
    *,
    output: str | Path,
    formats: tuple[str, ...] | None = None,
    force: bool = False,
    quiet: bool = False,
) -> int:
    """Follow every model through the reports (in release order) and write DIR/history.*."""
    from reportgen.output import preflight, write_atomically
    from reportgen.render.history_report import render_history

    if len(reports) < 2:
        raise UsageError("reportgen history: give at least two reports, in release order")
    target = Path(output)
    preflight(target, force)
    history = compute_history([load(r) for r in reports], [str(r) for r in reports])
    write_atomically(target, render_history(history, tuple(formats or ALL_FORMATS)), force)
    if not quiet:
        print("\n".join(printable(line, 2000) for line in history_summary(history)))
        print(f"wrote {target}/")
    return 0
