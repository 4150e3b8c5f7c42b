"""Figures: drawn on worker processes, they are the same as drawn in-process."""

from __future__ import annotations

import pytest
from conftest import DigitsModels, write_digits_config

from reportgen import figures
from reportgen.config import load_config
from reportgen.pipeline import BuildOptions, build
from reportgen.presentation import present
from reportgen.report_model import ReportModel


@pytest.fixture(scope="module")
def report(digits_models: DigitsModels, tmp_path_factory: pytest.TempPathFactory) -> ReportModel:
    cfg = write_digits_config(tmp_path_factory.mktemp("figures"), digits_models)
    return build(load_config(cfg), BuildOptions(formats=("json",), workers=1)).report


def test_figures_on_processes_equal_serial(report: ReportModel) -> None:
    jobs = present(report).figure_specs
    assert len(jobs) >= figures.MIN_PARALLEL_FIGURES  # so the pool is really used below
    assert {job.kind for job in jobs} >= {"diagnosis", "histogram", "trend", "overlay", "headline"}
    assert len({job.id for job in jobs}) == len(jobs)  # every figure id is made once
    serial = figures.draw_all(report, jobs, workers=1)
    parallel = figures.draw_all(report, jobs, workers=2)
    assert list(parallel) == list(serial)
    assert parallel == serial


def test_no_worker_processes_falls_back_to_drawing_here(report: ReportModel, monkeypatch: pytest.MonkeyPatch) -> None:
    import concurrent.futures

    started = []

    def refuse(*args: object, **kwargs: object) -> None:
        started.append(1)
        raise OSError("cannot start processes")

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", refuse)
    jobs = present(report).figure_specs
    assert figures.draw_all(report, jobs, workers=2) == figures.draw_all(report, jobs, workers=1)
    assert started == [1]
