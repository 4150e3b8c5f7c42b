"""The presentation layer: the answer per model, ranked findings, verdict runs, a view for every alert."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from reportgen import initializers
from reportgen.analysis import AnalysisOptions, analyze_tensor
from reportgen.diagnosis import diagnose_model
from reportgen.figures import draw_all
from reportgen.findings import write_findings
from reportgen.formatting import pvalue
from reportgen.presentation import present, rank_findings, top_findings, verdict_summary
from reportgen.report_model import Finding, ModelView, ReportModel, SelectedView, find_comparisons, slugify
from reportgen.selection import Selected
from reportgen.sources.base import InitSpec, LayerInfo, SourceInfo, TensorRef
from reportgen.sources.keras_app import InMemorySource
from reportgen.stats import clipped_histogram, compute_stats, readable_range
from reportgen.thresholds import DISPLAY

SHAPES = [(3, 3, 3, 16), (3, 3, 16, 32), (3, 3, 32, 32), (288, 64), (64, 10)]


def _glorot(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    limit = initializers.distribution(InitSpec("glorot_uniform"), shape).limit
    return rng.uniform(-limit, limit, shape).astype(np.float32)


def _model(
    name: str, arrays: list[np.ndarray], trained: bool | None, biases: list[np.ndarray] | None = None
) -> ModelView:
    """Analyse and diagnose a five-layer CNN given its kernels (and biases), as the pipeline does."""
    layers, values = [], {}
    for i, k in enumerate(arrays):
        lname = f"layer{i}"
        refs = [TensorRef(f"{lname}/kernel", "kernel", "kernel", k.shape, str(k.dtype), InitSpec("glorot_uniform"))]
        values[f"{lname}/kernel"] = k
        if biases is not None:
            b = biases[i]
            refs.append(TensorRef(f"{lname}/bias", "bias", "bias", b.shape, str(b.dtype), InitSpec("zeros")))
            values[f"{lname}/bias"] = b
        layers.append(LayerInfo(lname, "Conv2D" if k.ndim == 4 else "Dense", i, tuple(refs)))
    src = InMemorySource(SourceInfo("test", f"{name} built in the test", trained=trained), layers, values)
    analyses = {
        (la.name, r.name): analyze_tensor(src, la, r, AnalysisOptions(bins=30)) for la in layers for r in la.params
    }
    diag = diagnose_model(name, layers, analyses)
    sel = tuple(
        SelectedView(
            Selected(la, la.params, la.name, f"index {la.index}"), tuple(analyses[(la.name, r.name)] for r in la.params)
        )
        for la in (layers[0], layers[-1])
    )
    return ModelView(name, slugify(name), src.info, (), tuple(layers), analyses, sel, diag)


def _report(models: list[ModelView]) -> ReportModel:
    comparisons = find_comparisons(models)
    return ReportModel(
        "test",
        None,
        "2026-01-01T00:00:00Z",
        "t.yaml",
        "0" * 64,
        tuple(models),
        tuple(comparisons),
        tuple(write_findings(models, comparisons)),
        tuple(a for m in models for a in m.diagnosis.alerts),
        (("reportgen", "0"),),
    )


def alerted_report() -> ReportModel:
    """Return an intended-untrained model beside a trained one with a NaN and a huge outlier."""
    rng = np.random.default_rng(0)
    fresh = [_glorot(s, rng) for s in SHAPES]
    # "Trained": heavy-tailed, narrower than the init, and one layer with NaN and one with a huge outlier.
    trained = [(rng.laplace(0, 0.4, s) * np.abs(f).max() / 3).astype(np.float32) for s, f in zip(SHAPES, fresh)]
    trained[1].flat[5] = np.nan
    trained[2].flat[7] = 40 * float(trained[2].std())
    zeros = [np.zeros(s[-1], np.float32) for s in SHAPES]
    return _report(
        [_model("untrained", fresh, False, zeros), _model("trained", trained, True, [z + 0.01 for z in zeros])]
    )


@pytest.fixture(scope="module")
def report() -> ReportModel:
    return alerted_report()


def test_pvalue_reads_as_a_bound() -> None:
    assert pvalue(9.2e-132) == "p < 1e-100"
    assert pvalue(3.2e-12) == "p < 1e-11"
    assert pvalue(0.00099) == "p < 1e-3"
    assert pvalue(0.334) == "p = 0.33"
    assert pvalue(float("nan")) == "p –"


def test_answer_says_trained_or_not_with_the_worst_alert(report: ReportModel) -> None:
    page = present(report)
    untrained, trained = page.answers
    assert (
        untrained.state == "expected" and "is untrained" in untrained.sentence and "as its random" in untrained.sentence
    )
    assert "No alerts" in untrained.sentence
    counts = dict(trained.alerts)
    assert counts.get("critical", 0) >= 1  # the NaN
    assert trained.worst == "critical" and trained.state == "problem"
    n = sum(1 for a in report.alerts if a.model == "trained")
    assert f"{n} alerts" in trained.sentence and "the worst is critical" in trained.sentence


@pytest.mark.slow
def test_every_alerted_tensor_has_a_view_with_its_histogram(report: ReportModel) -> None:
    page = present(report)
    assert report.alerts
    cards = {t.anchor: t for mp in page.models for c in (*mp.cards, *mp.alerted) for t in c.tensors}
    figures = draw_all(report, page.figure_specs, workers=1)
    linked = {href.lstrip("#") for g in page.alert_groups for _, href in g.layers}
    for a in report.alerts:
        m = report.model(a.model)
        anchor = f"t-{m.slug}-{slugify(a.layer)}-{slugify(a.param or 'kernel')}"
        assert anchor in cards and anchor in linked, a
        card = cards[anchor]
        assert (card.figure in figures) or card.sentence, a
    # The outlier layer is outside the selection: it gets its own view, and its histogram a readable range.
    outlier = cards[f"t-{report.models[1].slug}-{slugify('layer2')}-{slugify('kernel')}"]
    assert outlier.analysis.view is not None and outlier.analysis.view.above + outlier.analysis.view.below >= 1


def test_constant_tensor_is_a_sentence_not_a_figure(report: ReportModel) -> None:
    page = present(report)
    bias = next(t for c in page.models[0].cards for t in c.tensors if t.analysis.param == "bias")
    assert bias.figure is None and bias.sentence == f"All {bias.analysis.stats.count} values of the bias are exactly 0."
    assert not any(s.id == f"hist-{bias.anchor}" for s in page.figure_specs)


def test_spectrum_only_with_enough_eigenvalues(report: ReportModel) -> None:
    page = present(report)
    for mp in page.models:
        for t in (t for c in mp.cards for t in c.tensors if t.analysis.role == "kernel"):
            sp = t.analysis.spectral
            enough = sp is not None and sp.evals is not None and len(sp.evals) >= DISPLAY.spectrum_min_evals
            assert (t.spectrum is not None) == enough


def test_intended_untrained_run_is_one_line_and_not_red(report: ReportModel) -> None:
    summary = verdict_summary(report.models[0])
    assert summary.line == "5 layers at initialisation, consistent with fresh draws, as intended; no exceptions."
    assert summary.exceptions == ()
    assert {r.badge for r in summary.rows} == {"v-expected"}
    assert all(
        "p < 1e-" not in r.evidence and "matches a fresh glorot_uniform draw" in r.evidence for r in summary.rows
    )


def test_runs_list_the_exceptions(report: ReportModel) -> None:
    m = report.models[1]
    first = m.diagnosis.verdicts[0]
    fresh = replace(
        m.diagnosis, verdicts=(replace(first, status="at_init", label="at initialisation"), *m.diagnosis.verdicts[1:])
    )
    summary = verdict_summary(replace(m, diagnosis=fresh))
    assert summary.line.startswith("4 layers moved from their initial draw; 1 at initialisation")
    assert [r.layer for r in summary.exceptions] == [first.layer]
    assert summary.exceptions[0].badge == "v-at_init"  # not meant untrained: the red badge stays


def test_ranking_uses_importance_when_findings_carry_it(report: ReportModel) -> None:
    kinds = ("comparison", "init", "trend", "bias", "observation")
    findings = tuple(Finding(f"f{i}", None, None, kinds[i], importance=i / 10) for i in range(5))
    ranked = rank_findings(replace(report, findings=findings))
    assert [f.text for f in ranked] == ["f4", "f3", "f2", "f1", "f0"]  # against the kind rule


def test_ranking_rule_orders_findings_of_equal_importance(report: ReportModel) -> None:
    ranked = rank_findings(replace(report, findings=tuple(replace(f, importance=0.5) for f in report.findings)))
    kinds = [(f.kind, f.model) for f in ranked]
    # The direct untrained-vs-trained comparison ranks above trends and biases; a finding that restates an
    # intended untrained model ranks below the same kind about the trained one.
    first = {k: kinds.index(k) for k in dict.fromkeys(kinds)}
    assert min(i for (k, _), i in first.items() if k == "comparison") < min(
        i for (k, _), i in first.items() if k in ("trend", "bias")
    )
    assert first[("init", "trained")] < first[("init", "untrained")]
    assert first[("trend", "trained")] < first[("trend", "untrained")]
    scores = [f.score for f in ranked]
    assert scores == sorted(scores, reverse=True)
    top = top_findings(ranked)
    assert len(top) == 3 and len({f.kind for f in top}) == 3  # three different things on the first page
    assert "comparison" in {f.kind for f in top}


def test_ranking_puts_alerted_layers_first_within_a_kind() -> None:
    rng = np.random.default_rng(1)
    a = _model("a", [_glorot(s, rng) for s in SHAPES], None)
    broken = [_glorot(s, rng) for s in SHAPES]
    broken[0].flat[0] = np.nan
    b = _model("b", broken, None)
    rep = _report([a, b])
    findings = (Finding("about a", "a", "layer0", "trend"), Finding("about b", "b", "layer0", "trend"))
    ranked = rank_findings(replace(rep, findings=findings))
    assert any(x.model == "b" and x.layer == "layer0" and x.severity == "critical" for x in rep.alerts)
    assert [f.text for f in ranked] == ["about b", "about a"]


def test_readable_range_matches_numpy() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(0, 0.01, 100_000).astype(np.float32)
    x[:3] = [0.9, -0.7, 12.16]
    stats = compute_stats(x, shape=x.shape, dtype="float32", bins=60)
    rng_ = readable_range(stats, DISPLAY.view_widen, DISPLAY.view_trigger)
    assert rng_ is not None
    p01, p99 = np.percentile(x.astype(np.float64), [1, 99])
    lo, hi = p01 - 0.5 * (p99 - p01), p99 + 0.5 * (p99 - p01)
    assert rng_ == pytest.approx((lo, hi), rel=1e-9)
    h = clipped_histogram(lambda: iter(np.array_split(x, 7)), lo, hi, 40)
    xf = x.astype(np.float64)
    np.testing.assert_array_equal(h.counts, np.histogram(xf, 40, range=(lo, hi))[0])
    assert (h.below, h.above) == (int((xf < lo).sum()), int((xf > hi).sum()))
    assert h.below + h.above + sum(h.counts) == x.size
    # A uniform draw fills its full range: no readable range is needed.
    u = rng.uniform(-1, 1, 10_000)
    assert readable_range(compute_stats(u, shape=u.shape, dtype="float64", bins=60), 0.5, 0.5) is None
    assert math.isclose(DISPLAY.view_trigger, 0.5)
