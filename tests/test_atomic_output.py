"""A report folder is never half-written: refused, killed, interrupted and unwritable builds."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from reportgen.cli import main

PROC_MAPS = Path("/proc/self/maps").exists()
SMALL = """\
title: Previous release
output: {out}
formats: [json]
models:
  - {{name: small, path: {path}}}
"""
# Enough work (spectra and initialisation checks of 1536x1536 kernels, one worker) that a
# signal sent once analysis starts lands well before the report is written.
BIG_MODELS = 3


def big_config(out: Path, path: Path) -> str:
    """Return a config of BIG_MODELS copies of the big model."""
    models = "".join(f"  - {{name: m{i}, path: {path}, init: glorot_uniform}}\n" for i in range(BIG_MODELS))
    return f"title: Next release\noutput: {out}\nformats: [json]\nmodels:\n{models}"


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """Write float32 tensors in the safetensors layout: header length, JSON header, raw data."""
    header, blobs, offset = {}, [], 0
    for name, arr in tensors.items():
        data = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def snapshot(folder: Path) -> dict[str, bytes]:
    """Return every file of a folder by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(target: Path) -> list[str]:
    """Return the temporary siblings a build leaves beside its target."""
    return sorted(p.name for p in target.parent.iterdir() if p.name.startswith(f".{target.name}."))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Make a small and a big safetensors model."""
    folder = tmp_path_factory.mktemp("atomic-inputs")
    rng = np.random.default_rng(0)
    small, big = folder / "small.safetensors", folder / "big.safetensors"
    write_safetensors(small, {"fc.weight": rng.uniform(-0.1, 0.1, (32, 16)), "fc.bias": np.zeros(32)})
    n = 1536
    limit = np.sqrt(6 / (2 * n))
    write_safetensors(big, {f"layers.{i}.weight": rng.uniform(-limit, limit, (n, n)) for i in range(3)})
    return small, big


@pytest.fixture()
def previous(inputs: tuple[Path, Path], tmp_path: Path) -> tuple[Path, dict[str, bytes], Path]:
    """Build a previous report into tmp/report; return it, its bytes, and a big config aimed at it."""
    small, big = inputs
    target = tmp_path / "report"
    cfg = tmp_path / "small.yaml"
    cfg.write_text(SMALL.format(out=target, path=small))
    assert main(["build", str(cfg), "--quiet"]) == 0
    big_cfg = tmp_path / "big.yaml"
    big_cfg.write_text(big_config(target, big))
    return target, snapshot(target), big_cfg


def start_build(cfg: Path) -> subprocess.Popen[bytes]:
    """Start `python -m reportgen build cfg --force` with one worker in a child process."""
    return subprocess.Popen(
        [sys.executable, "-m", "reportgen", "build", str(cfg), "--force", "--quiet", "-j", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_for(
    proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float = 120.0, interval: float = 0.002
) -> bool:
    """Poll until ready() holds; return False if the child exits first, fail if time runs out."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            return False
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("build never reached the point to signal")
        if interval:
            time.sleep(interval)
    return True


def analysing(proc: subprocess.Popen[bytes], weights: Path) -> Callable[[], bool]:
    """Return a check that the child has mapped the weights file, i.e. is reading tensors."""
    maps = Path(f"/proc/{proc.pid}/maps")

    def ready() -> bool:
        try:
            return str(weights) in maps.read_text()
        except OSError:
            return False

    return ready


def start_analysing(big_cfg: Path, weights: Path) -> subprocess.Popen[bytes]:
    """Start a build of big_cfg and return it once it has been reading weights for a moment."""
    proc = start_build(big_cfg)
    assert wait_for(proc, analysing(proc, weights)), proc.communicate()
    time.sleep(0.3)
    return proc


@pytest.mark.slow
def test_existing_folder_without_force_is_refused(previous, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    target, before, big_cfg = previous
    assert main(["build", str(big_cfg), "--quiet"]) == 7
    err = capsys.readouterr().err.strip()
    assert err == f"reportgen: error: {target}: output folder already exists; pass --force to replace it"
    assert snapshot(target) == before and leftovers(target) == []


@pytest.mark.slow
@pytest.mark.skipif(not PROC_MAPS, reason="needs /proc to see when the build starts reading tensors")
def test_sigkill_mid_analysis_leaves_previous_report(previous, inputs) -> None:  # type: ignore[no-untyped-def]
    target, before, big_cfg = previous
    proc = start_analysing(big_cfg, inputs[1])
    proc.kill()
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert snapshot(target) == before
    # No cleanup runs after SIGKILL; whatever is left must be a hidden sibling, never the target.
    assert all(name.startswith(f".{target.name}.tmp-") for name in leftovers(target))


@pytest.mark.slow
def test_sigkill_while_writing_leaves_old_or_complete_report(previous, inputs) -> None:  # type: ignore[no-untyped-def]
    target, before, _ = previous
    cfg = target.parent / "next.yaml"
    cfg.write_text(SMALL.format(out=target, path=inputs[0]).replace("Previous release", "Next release"))
    # The temporary folder lives for milliseconds: poll without sleeping, and try a few times.
    for _ in range(5):
        proc = start_build(cfg)
        writing = wait_for(
            proc,
            lambda: any(n.startswith(f".{target.name}.tmp-") for n in os.listdir(target.parent)),
            interval=0,
        )
        proc.kill()
        proc.wait(timeout=30)
        if writing:
            break
        shutil.rmtree(target)
        target.mkdir()
        for name, data in before.items():
            (target / name).write_bytes(data)
    else:
        pytest.skip("the build wrote its report before a signal could land")
    after = snapshot(target)
    if after != before:  # the rename happened first: then the new report is whole
        manifest = json.loads(after["manifest.json"])
        assert sorted(after) == sorted([*manifest["outputs"], "manifest.json"])
        for name, meta in manifest["outputs"].items():
            assert hashlib.sha256(after[name]).hexdigest() == meta["sha256"], name
        assert json.loads(after["stats.json"])["title"] == "Next release"


@pytest.mark.slow
def test_next_build_removes_stale_temporary_folders(previous) -> None:  # type: ignore[no-untyped-def]
    target, _, _ = previous
    # What a killed build leaves: hidden siblings from a process that no longer exists, made long ago.
    stale = [
        target.parent / f".{target.name}.tmp-999999999-abc123",
        target.parent / f".{target.name}.old-999999999-def456",
    ]
    for folder in stale:
        folder.mkdir()
        (folder / "stats.json").write_text("{}")
        os.utime(folder, (time.time() - 86400, time.time() - 86400))
    unrelated = target.parent / ".other.tmp-999999999-abc123"
    unrelated.mkdir()
    cfg = target.parent / "small.yaml"
    assert main(["build", str(cfg), "--force", "--quiet"]) == 0
    assert leftovers(target) == []
    assert unrelated.is_dir()  # only this target's leftovers are touched


@pytest.mark.slow
def test_report_moved_aside_by_a_killed_build_is_restored(previous, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    target, before, _ = previous
    # Killed between its two renames: the previous report sits in .NAME.old-PID-*, no target.
    aside = target.parent / f".{target.name}.old-999999999-abc123"
    target.rename(aside)
    cfg = target.parent / "small.yaml"
    assert main(["build", str(cfg), "--quiet"]) == 7  # restored, so it exists: --force is needed
    assert "output folder already exists" in capsys.readouterr().err
    assert snapshot(target) == before and leftovers(target) == []


@pytest.mark.slow
@pytest.mark.skipif(not PROC_MAPS, reason="needs /proc to see when the build starts reading tensors")
def test_ctrl_c_mid_analysis_exits_130_and_cleans_up(previous, inputs) -> None:  # type: ignore[no-untyped-def]
    target, before, big_cfg = previous
    proc = start_analysing(big_cfg, inputs[1])
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()
    assert err.decode().strip() == "reportgen: interrupted; no partial output was left"
    assert snapshot(target) == before
    assert leftovers(target) == []


def _unwritable_cases(tmp_path: Path) -> list[tuple[str, Path]]:
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    cases = [("under a file", blocker / "out")]
    if os.geteuid() != 0:  # root ignores permission bits
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        cases.append(("read-only parent", locked / "out"))
    return cases


def test_unwritable_output_is_one_line_exit_7(inputs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "small.yaml"
    cfg.write_text(SMALL.format(out=tmp_path / "unused", path=inputs[0]))
    try:
        for _, out in _unwritable_cases(tmp_path):
            assert main(["build", str(cfg), "--output", str(out), "--quiet"]) == 7
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1, err
            assert err.startswith(f"reportgen: error: {out}: output folder cannot be written: "), err
            assert not out.exists()
    finally:
        if (tmp_path / "locked").exists():
            (tmp_path / "locked").chmod(0o755)
