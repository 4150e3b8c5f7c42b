"""Dask back end on a real local cluster: same stats.json as inline, survives a killed worker, cancels."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

distributed = pytest.importorskip("distributed")

import cloudpickle  # noqa: E402 - distributed brings it

from reportgen import executor  # noqa: E402
from reportgen.analysis import AnalysisOptions  # noqa: E402
from reportgen.cli import main  # noqa: E402
from reportgen.errors import ConfigError  # noqa: E402
from reportgen.executor import Executors, reopen_recipe  # noqa: E402
from reportgen.sources.detect import open_path  # noqa: E402

# Workers unpickle the plugin below without importing this file.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def write_checkpoint(folder: Path, layers: int, width: int = 64) -> Path:
    """Write a Linear-stack checkpoint in two shards with an index; return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    arrays = {}
    for i in range(layers):
        arrays[f"h.{i}.fc.weight"] = rng.normal(0.0, 0.05, (width + 4 * i, width)).astype("f4")
        arrays[f"h.{i}.fc.bias"] = rng.normal(0.0, 0.01, width + 4 * i).astype("f4")
    names = sorted(arrays)
    shards = [f"model-0000{1 + (n >= len(names) // 2)}-of-00002.safetensors" for n in range(len(names))]
    weight_map = dict(zip(names, shards, strict=True))
    for shard in sorted(set(weight_map.values())):
        save_file({k: arrays[k] for k in names if weight_map[k] == shard}, str(folder / shard))
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return folder


def write_config(folder: Path, checkpoint: Path, extra: str = "") -> Path:
    """Write a JSON-only config for the checkpoint."""
    cfg = folder / f"report{len(list(folder.glob('*.yaml')))}.yaml"
    cfg.write_text(
        f"title: on dask\noutput: {folder / 'unused'}\nformats: [json]\n{extra}"
        f"models:\n  - name: llm\n    path: {checkpoint}\n    init: pytorch_default\n"
    )
    return cfg


def build_stats(cfg: Path, out: Path, *args: str) -> bytes:
    """Build through the CLI and return stats.json."""
    assert main(["build", str(cfg), "--quiet", "--format", "json", "--output", str(out), *args]) == 0
    return (out / "stats.json").read_bytes()


class SlowTensors(distributed.WorkerPlugin):  # type: ignore[misc]
    """Make every tensor take a while on the workers, so a worker can be killed mid-build."""

    name = "slow-tensors"

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def setup(self, worker: Any) -> None:
        import reportgen.executor as ex

        real, delay = ex.analyze_tensor, self.delay

        def slow(*args: Any) -> Any:
            time.sleep(delay)
            return real(*args)

        self.real = real
        ex.analyze_tensor = slow

    def teardown(self, worker: Any) -> None:
        import reportgen.executor as ex

        ex.analyze_tensor = self.real


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=40,
    ) as c:
        yield c


@pytest.fixture(scope="module")
def slow_workers(cluster: Any) -> Iterator[Any]:
    """The cluster with the slow-tensors plugin on every worker, restarted ones included."""
    with distributed.Client(cluster) as client:
        client.register_plugin(SlowTensors(0.3))
        yield client
        client.unregister_worker_plugin(SlowTensors.name)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A small checkpoint with its config and the inline build's stats.json."""
    folder = tmp_path_factory.mktemp("dask")
    cfg = write_config(folder, write_checkpoint(folder / "ckpt", layers=6))
    return cfg, build_stats(cfg, folder / "inline", "--executor", "inline")


@pytest.fixture()
def one_task_per_tensor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "BATCH_ELEMS", 1)


@pytest.mark.slow
def test_scheduler_build_equals_inline(cluster: Any, small: tuple[Path, bytes], tmp_path: Path) -> None:
    cfg, inline = small
    assert json.loads(inline)["models"][0]["layers"]
    assert build_stats(cfg, tmp_path / "d", "--scheduler", cluster.scheduler_address) == inline


@pytest.mark.slow
def test_config_dask_without_scheduler_starts_a_local_cluster(small: tuple[Path, bytes], tmp_path: Path) -> None:
    cfg, inline = small
    text = cfg.read_text().replace("formats: [json]\n", "formats: [json]\nexecutor: dask\n")
    cfg2 = tmp_path / "local.yaml"
    cfg2.write_text(text)
    got, want = json.loads(build_stats(cfg2, tmp_path / "d", "-j", "2")), json.loads(inline)
    # The config itself differs (its name and hash are reported); every number must not.
    assert got.pop("config") != want.pop("config")
    assert got == want


def _kill_a_busy_worker(cluster: Any, done: threading.Event, killed: list[int]) -> None:
    """Wait until a worker is running one of the build's tasks, then SIGKILL its process."""
    deadline = time.monotonic() + 60
    while not done.is_set() and time.monotonic() < deadline:
        try:
            busy = [
                ts.processing_on.address
                for ts in list(cluster.scheduler.tasks.values())
                if ts.state == "processing" and ts.processing_on is not None
            ]
        except RuntimeError:  # the scheduler's dict changed while we looked
            busy = []
        if busy:
            time.sleep(0.2)  # let the task get going
            for nanny in list(cluster.workers.values()):
                if nanny.worker_address == busy[0] and nanny.process is not None:
                    pid = nanny.process.pid
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
        time.sleep(0.02)


@pytest.mark.slow
def test_build_survives_a_killed_worker(
    cluster: Any, slow_workers: Any, small: tuple[Path, bytes], tmp_path: Path, one_task_per_tensor: None
) -> None:
    cfg, inline = small
    done, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_a_busy_worker, args=(cluster, done, killed))
    killer.start()
    try:
        got = build_stats(cfg, tmp_path / "d", "--scheduler", cluster.scheduler_address)
    finally:
        done.set()
        killer.join()
    assert killed, "no worker was killed while the build ran"
    with pytest.raises(ProcessLookupError):
        os.kill(killed[0], 0)
    assert got == inline
    slow_workers.wait_for_workers(2, timeout=60)  # the nanny restarted it


def test_interrupt_cancels_tasks_on_the_cluster(
    cluster: Any, slow_workers: Any, small: tuple[Path, bytes], one_task_per_tensor: None
) -> None:
    cfg, _ = small
    source = open_path(cfg.parent / "ckpt")
    recipe = reopen_recipe(source, cfg.parent / "ckpt", None)
    calls = []

    def ctrl_c(message: str, done: int, total: int) -> None:
        calls.append(done)
        raise KeyboardInterrupt

    ex = Executors("dask", cluster.scheduler_address)
    before = len(cluster.scheduler.transition_log)
    try:
        with pytest.raises(KeyboardInterrupt):
            ex.analyze(source, source.layers(), AnalysisOptions(), recipe, "llm", ctrl_c)
        assert calls == [1]
        deadline = time.monotonic() + 10
        while cluster.scheduler.tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not cluster.scheduler.tasks  # dropped while this client is still connected
    finally:
        ex.close()
    log = list(cluster.scheduler.transition_log)[before:]
    ours = {t.key for t in log if str(t.key).startswith("run_remote")}
    finished = {t.key for t in log if t.key in ours and t.finish == "memory"}
    assert len(ours) >= 12 and len(finished) < 6, (len(ours), len(finished))  # the rest never ran


@pytest.mark.slow
def test_unreachable_scheduler_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "SCHEDULER_TIMEOUT_S", 1)
    with pytest.raises(ConfigError, match=r"cannot connect to the Dask scheduler at tcp://127\.0\.0\.1:9"):
        Executors("dask", "tcp://127.0.0.1:9").backend("dask")


def test_local_cluster_workers_keep_glibc_adaptive_malloc(monkeypatch: pytest.MonkeyPatch) -> None:
    # A fixed trim threshold maps and zero-fills every temporary array anew: 2x the pool's CPU.
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with Executors("dask", workers=1) as ex:
        backend = ex.backend("dask")
        env = backend.client.run(lambda: dict(os.environ))  # type: ignore[attr-defined]
    assert env and all("MALLOC_TRIM_THRESHOLD_" not in e for e in env.values())
    assert "MALLOC_TRIM_THRESHOLD_" not in os.environ
