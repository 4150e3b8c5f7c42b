"""Figures: drawn on worker processes, they are the same as drawn in-process."""

from __future__ import annotations

from pathlib import Path

from conftest import DIGITS_CONFIG, DigitsModels

from reportgen import figures
from reportgen.config import load_config
from reportgen.pipeline import BuildOptions, build


def test_figures_on_processes_equal_serial(digits_models: DigitsModels, tmp_path: Path) -> None:
    cfg = tmp_path / "digits.yaml"
    cfg.write_text(
        DIGITS_CONFIG.format(
            out=tmp_path / "report",
            untrained=digits_models.untrained_keras,
            trained=digits_models.trained_keras,
            weights_h5=digits_models.trained_weights_h5,
        )
    )
    report = build(load_config(cfg), BuildOptions(formats=("json",), workers=1)).report
    jobs = figures.figure_jobs(report)
    assert len(jobs) >= figures.MIN_PARALLEL_FIGURES  # so the pool is really used below
    serial = figures.draw_all(report, workers=1)
    parallel = figures.draw_all(report, workers=2)
    assert list(parallel) == list(serial)
    assert parallel == serial
    kinds = {job[0] for job in jobs}
    assert kinds == {"diagnosis", "histogram", "spectrum", "trend", "overlay"}
