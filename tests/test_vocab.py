"""Each closed set has one home, and every stage that uses it agrees with that home."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path
from types import SimpleNamespace
from typing import get_args

import numpy as np
import pytest

from reportgen import vocab
from reportgen.layer_kinds import BATCH_NORMS, TREND_FAMILIES, is_batchnorm
from reportgen.sources.base import LayerInfo, SourceInfo, TensorRef, WeightSource
from reportgen.sources.formats import FILE_FORMATS, FORMATS, FileFormat, MemoryFormat, in_memory, reopenable

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "reportgen" / "sources"

# --------------------------------------------------------------------------- layer kinds

# Class names the frameworks give batch normalisation, and near misses that must not count as one.
FRAMEWORK_BATCH_NORMS = ("BatchNormalization", "SyncBatchNormalization", "BatchNorm", "BatchNorm2d", "SyncBatchNorm")
NOT_BATCH_NORMS = ("LayerNormalization", "LayerNorm", "GroupNormalization", "InstanceNorm2d", "Dense", "Unknown")


def _bias_view(norm_class: str) -> SimpleNamespace:
    """A stand-in ModelView: one conv whose all-zero bias feeds a layer of norm_class."""
    from reportgen.stats import compute_stats

    conv = SimpleNamespace(name="c", class_name="Conv2D", feeds=("n",), params=("bias",))
    norm = SimpleNamespace(name="n", class_name=norm_class, feeds=(), params=())
    bias = SimpleNamespace(role="bias", stats=compute_stats(np.zeros(4, dtype="f4")), init=None)
    return SimpleNamespace(
        name="m",
        layers=[conv, norm],
        weighted_layers=[conv],
        analysis=lambda layer, param: bias if (layer, param) == ("c", "bias") else None,
        diagnosis=SimpleNamespace(moved=1),
    )


@pytest.mark.parametrize("norm_class", sorted({*BATCH_NORMS, *FRAMEWORK_BATCH_NORMS, *NOT_BATCH_NORMS}))
def test_diagnosis_and_findings_recognise_the_same_batch_norms(norm_class: str) -> None:
    from reportgen.diagnosis import _feeds_batch_norm
    from reportgen.findings import _biases

    bias = TensorRef("c/bias", "bias", "bias", (4,), "float32")
    conv = LayerInfo("c", "Conv2D", 0, (bias,), feeds=("n",))
    norm = LayerInfo("n", norm_class, 1, ())
    by_diagnosis = _feeds_batch_norm(conv, {"c": conv, "n": norm}, norm)
    (finding,) = _biases(_bias_view(norm_class))
    by_findings = "BatchNormalization" in finding.text
    assert by_diagnosis == by_findings == is_batchnorm(norm_class)
    assert is_batchnorm(norm_class) == (norm_class not in NOT_BATCH_NORMS)


def test_depth_trend_figure_and_finding_pool_the_same_kernels(tmp_path: Path) -> None:
    """A real PyTorch checkpoint (kernels named 'weight'): the figure plots what the finding describes."""
    torch = pytest.importorskip("torch")
    import reportgen
    from reportgen.figures import depth_trend

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3),
        torch.nn.Conv2d(4, 8, 3),
        torch.nn.BatchNorm2d(8),
        torch.nn.Conv2d(8, 16, 3),
        torch.nn.Flatten(),
        torch.nn.Linear(64, 32),
        torch.nn.Linear(32, 16),
        torch.nn.Linear(16, 10),
    )
    path = tmp_path / "net.pt"
    torch.save(net.state_dict(), path)
    report = reportgen.analyze(path, name="net", init="pytorch_default", spectral=False, workers=1)
    (model,) = report.models
    assert model.source.format == "pytorch"
    for family in TREND_FAMILIES:
        figure = depth_trend(report.models, family, "f")
        assert figure is not None, family
        plotted = int(re.search(r"net: (\d+) layers", figure.alt).group(1))
        (finding,) = [f for f in report.findings if f.kind == "trend" and f" {family} kernels" in f.text]
        described = int(re.search(r"the (\d+) [a-z -]+ kernels", finding.text).group(1))
        assert plotted == described == 3, (family, figure.alt, finding.text)


# --------------------------------------------------------------------------- weight formats


def test_every_registered_format_declares_all_it_needs() -> None:
    for name, fmt in FORMATS.items():
        assert fmt.name == name and fmt.display
        assert isinstance(fmt.reopenable, bool) and isinstance(fmt.hdf5, bool)
        assert (fmt.opener is not None) == (name in FILE_FORMATS), name
        assert not fmt.reopenable or fmt.opener is not None, name
        if fmt.opener is not None:
            module, _, cls = fmt.opener.partition(":")
            assert issubclass(getattr(importlib.import_module(module), cls), WeightSource), fmt.opener
    assert set(FORMATS) == set(get_args(FileFormat)) | set(get_args(MemoryFormat))
    assert "torch" not in FORMATS  # PyTorch checkpoints have one name: pytorch


def _string_args(call: ast.Call) -> list[str]:
    """Return the format string a SourceInfo(...) call passes, positionally or as format=."""
    args = [*call.args[:1], *(k.value for k in call.keywords if k.arg == "format")]
    return [a.value for a in args if isinstance(a, ast.Constant) and isinstance(a.value, str)]


def test_every_format_a_source_names_is_registered() -> None:
    named: set[str] = set()
    for path in SOURCES.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "SourceInfo":
                named.update(_string_args(node))
    detected = {
        node.value.value
        for node in ast.walk(ast.parse((SOURCES / "detect.py").read_text(encoding="utf-8")))
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
    }
    assert named and named <= set(FORMATS), named - set(FORMATS)
    assert detected == set(FILE_FORMATS), detected ^ set(FILE_FORMATS)


def test_the_executor_asks_the_registry_which_formats_workers_reopen() -> None:
    from reportgen.executor import ReopenRecipe, choose_kind, reopen_recipe
    from reportgen.sources.keras_app import InMemorySource

    for name in FILE_FORMATS:
        want = "processes" if FORMATS[name].reopenable else "threads"
        assert choose_kind(None, ReopenRecipe(name, "/w/x", None, ()), 4) == want, name
        assert reopenable(name) == FORMATS[name].reopenable and not in_memory(name)
    for name in set(FORMATS) - set(FILE_FORMATS):
        assert in_memory(name) and not reopenable(name)
        mem = InMemorySource(SourceInfo(name, "test"), [], {})
        assert reopen_recipe(mem, Path("/w/x"), None) is None, name
    assert not reopenable("torch") and not in_memory("torch")


def test_a_pytorch_checkpoint_is_detected_and_opened_under_one_name(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from reportgen.sources.detect import detect_format, open_path

    path = tmp_path / "w.bin"
    torch.save({"fc.weight": torch.ones(2, 3)}, path)
    with open_path(path) as src:
        assert detect_format(path) == src.info.format == "pytorch"


# --------------------------------------------------------------------------- statuses, severities, outputs


def test_every_status_has_its_words_colours_and_style() -> None:
    from reportgen.figures import VERDICT_COLORS
    from reportgen.render import release_figures
    from reportgen.stats_json import Status

    statuses = set(vocab.STATUSES)
    assert set(vocab.STATUS_WORDS) == statuses
    assert set(VERDICT_COLORS) == set(release_figures.VERDICT_COLORS) == set(release_figures.VERDICT_CODES) == statuses
    assert Status is vocab.Status
    css = (ROOT / "templates" / "style.css").read_text(encoding="utf-8")
    assert all(f".v-{s} " in css for s in statuses)


def test_severities_outputs_executors_and_fits_come_from_one_place() -> None:
    from reportgen import config, diff, ranking, releases
    from reportgen.cli import make_parser
    from reportgen.stats_json import Severity

    assert diff.SEVERITY_ORDER == vocab.SEVERITIES and Severity is vocab.Severity
    assert set(ranking.SEVERITY_BONUS) == set(vocab.SEVERITIES)
    assert config.FORMATS == releases.ALL_FORMATS == vocab.OUTPUT_FORMATS
    fields = config.ReportConfig.model_fields
    assert get_args(fields["spectral_fit"].annotation) == vocab.SPECTRAL_FITS
    assert get_args(get_args(fields["executor"].annotation)[0]) == vocab.EXECUTOR_KINDS
    build = next(
        a for a in make_parser()._subparsers._group_actions[0].choices["build"]._actions if a.dest == "executor"
    )
    assert tuple(build.choices) == vocab.EXECUTOR_KINDS
