"""Faults during a build (kill -9, Ctrl-C, full disk, a crash inside the output swap) leave no process,
no temporary file and a readable previous report; --force replaces only what reportgen wrote."""

from __future__ import annotations

import errno
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile import assert_clean_failure, config_file, keras_archive, run, write_safetensors

from reportgen.cli import INTERRUPTED

ROOT = Path(__file__).resolve().parents[1]
BIG = 1536  # a Dense kernel of BIG x BIG: its spectrum keeps a worker busy for a second or more


def _group(pgid: int) -> list[int]:
    """Return the ids of live processes in a process group (zombies aside)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def _wait_gone(pgid: int, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (alive := _group(pgid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


@pytest.fixture(scope="module")
def big_keras(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("faults")
    return keras_archive(folder / "big.keras", units=BIG, inputs=BIG)


@pytest.fixture()
def setup(big_keras: Path, tmp_path: Path) -> Iterator[tuple[Path, Path, dict[str, bytes], Path]]:
    """Build a previous report; return (config of a slow build, target, previous bytes, private TMPDIR)."""
    small = write_safetensors(tmp_path / "small.safetensors", {"fc.weight": [[0.5, -0.5], [0.25, 0.0]]})  # type: ignore[dict-item]
    target = tmp_path / "report"
    first = config_file(tmp_path, small, target)
    assert run("build", str(first), "--quiet", "-j", "1").code == 0
    previous = {p.name: p.read_bytes() for p in target.iterdir()}
    slow = tmp_path / "slow.yaml"
    models = "".join(f"  - {{name: m{i}, path: {big_keras}}}\n" for i in range(3))
    slow.write_text(f"title: slow\noutput: {target}\nformats: [json]\nmodels:\n{models}")
    # Short: the fork server's socket lives in TMPDIR, and a socket path must stay under 108 bytes.
    tmpdir = Path(tempfile.mkdtemp(prefix="rgt-", dir="/tmp"))
    yield slow, target, previous, tmpdir
    shutil.rmtree(tmpdir, ignore_errors=True)


def _start(cfg: Path, tmpdir: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmpdir)}
    return subprocess.Popen(
        [sys.executable, "-m", "reportgen", "build", str(cfg), "--force", "--quiet", "-j", "2", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,  # its own process group, as a shell gives a pipeline
    )


def _wait_for_workers(proc: subprocess.Popen[bytes], count: int = 4, timeout: float = 120.0) -> None:
    """Wait until the build runs its worker processes (itself, tracker, fork server, workers)."""
    deadline = time.monotonic() + timeout
    while len(_group(proc.pid)) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "workers never started"
        time.sleep(0.05)


def _assert_previous(target: Path, previous: dict[str, bytes]) -> None:
    assert {p.name: p.read_bytes() for p in target.iterdir()} == previous
    assert sorted(p.name for p in target.parent.iterdir() if p.name.startswith(".report.")) == []


@pytest.mark.slow
def test_kill_9_leaves_no_process_no_temp_file_and_the_previous_report(setup) -> None:  # type: ignore[no-untyped-def]
    cfg, target, previous, tmpdir = setup
    proc = _start(cfg, tmpdir)
    _wait_for_workers(proc)
    time.sleep(1.0)
    # The .keras weights are read in place, never extracted: only the fork server's socket folder is there.
    assert [name[:5] for name in os.listdir(tmpdir)] == ["rgmp-"]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _wait_gone(proc.pid) == []
    # `reportgen build ... | tee log` returns: every holder of the pipe's write end is gone.
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 10)
    assert ready and proc.stdout.read() == b""
    assert os.listdir(tmpdir) == []
    # The killed build's own folder is cleaned by the next build; the previous report is intact.
    assert (target / "stats.json").read_bytes() == previous["stats.json"]
    assert run("build", str(cfg.parent / "c.yaml"), "--quiet", "--force", "-j", "1").code == 0
    _assert_previous(target, previous)


@pytest.mark.slow
@pytest.mark.parametrize("when", ["starting", "analysing"])
def test_ctrl_c_to_the_group_prints_one_line(setup, when: str) -> None:  # type: ignore[no-untyped-def]
    cfg, target, previous, tmpdir = setup
    proc = _start(cfg, tmpdir)
    if when == "starting":
        _wait_for_workers(proc, count=3)  # the fork server is up, workers are being started
    else:
        _wait_for_workers(proc)
        time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert err.decode().strip() == INTERRUPTED, err.decode()
    assert _wait_gone(proc.pid) == []
    assert os.listdir(tmpdir) == []
    _assert_previous(target, previous)


@pytest.mark.slow
def test_keras_build_leaves_nothing_in_tmpdir(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, _, _, tmpdir = setup
    for compression in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        model = keras_archive(tmp_path / f"m{compression}.keras", compression=compression)
        cfg = config_file(tmp_path, model, tmp_path / f"out{compression}")
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmpdir)}
        proc = subprocess.run(
            [sys.executable, "-m", "reportgen", "build", str(cfg), "--quiet", "-j", "2", "--executor", "processes"],
            capture_output=True,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr.decode()
        assert os.listdir(tmpdir) == []
    broken = tmp_path / "broken.keras"
    broken.write_bytes(keras_archive(tmp_path / "b.keras").read_bytes()[:-200])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmpdir)}
    proc = subprocess.run(
        [sys.executable, "-m", "reportgen", "inspect", str(broken)], capture_output=True, env=env, text=True
    )
    assert proc.returncode == 4 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert os.listdir(tmpdir) == []


def test_disk_full_while_writing_keeps_the_previous_report(setup, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    _, target, previous, _ = setup

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    outcome = run("build", str(target.parent / "c.yaml"), "--quiet", "--force", "-j", "1")
    assert_clean_failure(outcome, 7, "writing the report failed: No space left on device")
    _assert_previous(target, previous)


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["before-swap", "after-swap"])
def test_crash_around_the_output_swap(setup, moment: str) -> None:  # type: ignore[no-untyped-def]
    _, target, previous, tmpdir = setup
    cfg = target.parent / "c.yaml"
    cfg.write_text(cfg.read_text().replace("title: t", "title: new"))
    # Die by SIGKILL just before or just after the one atomic exchange of the folders.
    script = f"""
import os, signal, reportgen.output as out
real = out.exchange
def exchange(a, b):
    if {moment == "before-swap"!r}:
        os.kill(os.getpid(), signal.SIGKILL)
    done = real(a, b)
    os.kill(os.getpid(), signal.SIGKILL)
out.exchange = exchange
from reportgen.cli import main
main(["build", {str(cfg)!r}, "--quiet", "--force", "-j", "1"])
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmpdir)}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    report = json.loads((target / "stats.json").read_text())  # readable at every instant
    assert report["title"] == ("t" if moment == "before-swap" else "new")
    if moment == "before-swap":
        assert {p.name: p.read_bytes() for p in target.iterdir()} == previous
    # The next build clears what the killed one left beside the target.
    assert run("build", str(cfg), "--quiet", "--force", "-j", "1").code == 0
    assert sorted(p.name for p in target.parent.iterdir() if p.name.startswith(".report.")) == []


# ---------------------------------------------------------------------------- --force


def test_force_refuses_a_folder_reportgen_did_not_write(tmp_path: Path) -> None:
    model = write_safetensors(tmp_path / "m.safetensors", {"fc.weight": [[1.0, 2.0]]})  # type: ignore[dict-item]
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("years of work")
    cfg = config_file(tmp_path, model, thesis)
    assert_clean_failure(run("build", str(cfg), "--force", "--quiet"), 7, "is not a report folder")
    assert (thesis / "chapter1.tex").read_text() == "years of work"
    # A forged manifest does not cover files it does not list.
    (thesis / "manifest.json").write_text(json.dumps({"manifest_version": "1.0", "outputs": {"stats.json": {}}}))
    assert_clean_failure(run("build", str(cfg), "--force", "--quiet"), 7, "holds files reportgen did not write")
    assert (thesis / "chapter1.tex").exists()


def test_force_replaces_an_empty_folder_and_a_report(tmp_path: Path) -> None:
    model = write_safetensors(tmp_path / "m.safetensors", {"fc.weight": [[1.0, 2.0]]})  # type: ignore[dict-item]
    out = tmp_path / "out"
    out.mkdir()
    cfg = config_file(tmp_path, model, out)
    assert run("build", str(cfg), "--force", "--quiet", "-j", "1").code == 0
    assert run("build", str(cfg), "--force", "--quiet", "-j", "1").code == 0
    (out / "notes.txt").write_text("mine")
    assert_clean_failure(run("build", str(cfg), "--force", "--quiet"), 7, "(notes.txt)")
    diff = tmp_path / "diff"
    assert run("diff", str(out), str(out), "--output", str(diff), "-f", "json", "--quiet").code == 0
    assert run("diff", str(out), str(out), "--output", str(diff), "-f", "json", "--quiet", "--force").code == 0
