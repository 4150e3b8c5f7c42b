"""The executor back ends: same numbers everywhere, named failures, the default choice, cancellation."""

from __future__ import annotations

import dataclasses
import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from reportgen import executor
from reportgen.analysis import AnalysisOptions
from reportgen.cli import main
from reportgen.config import load_config, parse_config
from reportgen.errors import ConfigError, SourceError
from reportgen.executor import Executors, ReopenRecipe, choose_kind, make_tasks, reopen_recipe
from reportgen.init_plan import parse_spec
from reportgen.pipeline import BuildOptions, build
from reportgen.sources.base import LayerInfo, SourceInfo, TensorRef
from reportgen.sources.detect import open_path
from reportgen.sources.keras_app import InMemorySource

SHARD_1 = "model-00001-of-00002.safetensors"
SHARD_2 = "model-00002-of-00002.safetensors"


def write_checkpoint(folder: Path, layers: int = 4, width: int = 48, seed: int = 0) -> Path:
    """Write a Linear-stack checkpoint in two shards with an index; return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for i in range(layers):
        limit = np.sqrt(6.0 / (2 * width))
        rows = width + 8 * i
        arrays[f"model.layers.{i}.proj.weight"] = rng.uniform(-limit, limit, (rows, width)).astype("f4")
        arrays[f"model.layers.{i}.proj.bias"] = rng.normal(0.0, 0.02, rows).astype("f4")
    arrays["model.norm.weight"] = np.ones(width, "f4")
    names = sorted(arrays)
    first = set(names[: len(names) // 2])
    weight_map = {k: SHARD_1 if k in first else SHARD_2 for k in names}
    for shard in (SHARD_1, SHARD_2):
        part = {k: arrays[k] for k in names if weight_map[k] == shard}
        save_file(part, str(folder / shard), metadata={"format": "pt"})
    index = {"metadata": {}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return folder


def write_config(folder: Path, checkpoint: Path, extra: str = "") -> Path:
    """Write a config with one safetensors model; extra lines go at the top level."""
    cfg = folder / "report.yaml"
    cfg.write_text(
        f"title: sharded\noutput: {folder / 'out'}\nformats: [json]\n{extra}"
        f"models:\n  - name: sharded\n    path: {checkpoint}\n    init: pytorch_default\n"
    )
    return cfg


def stats_bytes(cfg: Path, out: Path, **choices: object) -> bytes:
    """Build cfg's report into out and return its stats.json."""
    build(load_config(cfg), BuildOptions(output=str(out), workers=2, **choices))  # type: ignore[arg-type]
    return (out / "stats.json").read_bytes()


@pytest.fixture()
def checkpoint(tmp_path: Path) -> Path:
    return write_checkpoint(tmp_path / "ckpt")


@pytest.mark.slow
def test_back_ends_write_identical_stats(tmp_path: Path, checkpoint: Path) -> None:
    cfg = write_config(tmp_path, checkpoint)
    inline = stats_bytes(cfg, tmp_path / "inline", executor="inline")
    doc = json.loads(inline)
    params = [p for layer in doc["models"][0]["layers"] for p in layer["params"]]
    assert len(params) == 9 and all("stats" in p for p in params)
    for kind in ("threads", "processes"):
        assert stats_bytes(cfg, tmp_path / kind, executor=kind) == inline, kind


@pytest.mark.slow
def test_back_ends_return_identical_analyses(checkpoint: Path) -> None:
    source = open_path(checkpoint)
    recipe = reopen_recipe(source, checkpoint, None)
    found = {}
    for kind in ("inline", "threads", "processes"):
        with Executors(kind, workers=2) as ex:
            found[kind] = ex.analyze(source, source.layers(), AnalysisOptions(), recipe, "m")
    spectra = [a.spectral for a in found["inline"].values() if a.spectral is not None]
    assert len(spectra) == 4
    # Pickles compare every field, eigenvalue arrays included, bit for bit.
    for kind in ("threads", "processes"):
        assert list(found[kind]) == list(found["inline"])
        for key, a in found["inline"].items():
            assert pickle.dumps(found[kind][key]) == pickle.dumps(a), (kind, key)


def test_results_keep_job_order_not_completion_order(checkpoint: Path) -> None:
    source = open_path(checkpoint)
    with Executors("threads", workers=2) as ex:
        got = ex.analyze(source, source.layers(), AnalysisOptions(), None, "m")
    sizes = [a.stats.count for a in got.values()]
    assert sizes == sorted(sizes, reverse=True)


def test_unreadable_tensor_names_model_layer_and_tensor(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = open_path(checkpoint)
    real = source.read

    def read(ref: TensorRef) -> np.ndarray:
        if ref.key == "model.layers.2.proj.weight":
            raise OSError("Input/output error")
        return real(ref)

    monkeypatch.setattr(source, "read", read)
    with Executors("inline") as ex, pytest.raises(SourceError) as err:
        ex.analyze(source, source.layers(), AnalysisOptions(), None, "sharded")
    assert str(err.value) == (
        "model 'sharded': layer 'model.layers.2.proj': tensor 'weight' (model.layers.2.proj.weight): Input/output error"
    )


@pytest.mark.parametrize("kind", ["inline", "threads", "processes"])
def test_shard_truncated_after_opening_fails_named(checkpoint: Path, kind: str) -> None:
    source = open_path(checkpoint)
    recipe = reopen_recipe(source, checkpoint, None)
    shard = checkpoint / SHARD_2
    size = shard.stat().st_size
    with open(shard, "r+b") as fh:
        fh.truncate(size - 64)
    with Executors(kind, workers=2) as ex, pytest.raises(SourceError) as err:
        ex.analyze(source, source.layers(), AnalysisOptions(), recipe, "sharded")
    msg = str(err.value)
    assert msg.startswith("model 'sharded': layer 'model.") and "tensor '" in msg, msg
    if kind == "processes":
        # The worker compares the file it sees with what the client opened.
        assert f"this worker sees {size - 64} bytes, the client saw {size}" in msg


def test_worker_failure_exits_with_source_error_code(
    tmp_path: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import reportgen.pipeline

    def wrong_sizes(source, path, init):  # type: ignore[no-untyped-def]
        recipe = reopen_recipe(source, path, init)
        return dataclasses.replace(recipe, files=tuple((f, n + 1) for f, n in recipe.files))

    # The workers are told to expect other files than they find, as on a badly synced cluster.
    monkeypatch.setattr(reportgen.pipeline, "reopen_recipe", wrong_sizes)
    cfg = write_config(tmp_path, checkpoint)
    assert main(["build", str(cfg), "--quiet", "--executor", "processes", "-j", "2"]) == 4
    err = capsys.readouterr().err
    want = "reportgen: error: model 'sharded': layer 'model.layers.3.proj': tensor 'weight'"
    assert err.startswith(want), err
    assert "the client saw" in err
    assert not (tmp_path / "out").exists()


def test_default_choice() -> None:
    recipe = ReopenRecipe("safetensors", "/w/model", None, ())
    assert choose_kind(None, recipe, 4) == "processes"
    assert choose_kind(None, None, 4) == "threads"  # in memory: arrays never leave this process
    assert choose_kind("dask", None, 4) == "threads"
    assert choose_kind("processes", None, 4) == "threads"
    assert choose_kind("inline", None, 4) == "inline"
    assert choose_kind(None, recipe, 1) == "inline"
    assert choose_kind("dask", recipe, 4) == "dask"
    assert choose_kind(None, ReopenRecipe("tf-savedmodel", "/w/sm", None, ()), 4) == "threads"


def test_in_memory_source_has_no_recipe(checkpoint: Path) -> None:
    ref = TensorRef("k", "kernel", "kernel", (2, 2), "float32")
    mem = InMemorySource(
        SourceInfo("keras-application", "test"), [LayerInfo("d", "Dense", 0, (ref,))], {"k": np.eye(2, dtype="f4")}
    )
    assert reopen_recipe(mem, None, None) is None
    source = open_path(checkpoint)
    init = parse_spec("pytorch_default")
    recipe = reopen_recipe(source, checkpoint, init)
    assert recipe is not None
    assert (recipe.format, recipe.path, recipe.init) == ("safetensors", str(checkpoint), init)
    assert [Path(f).name for f, _ in recipe.files] == ["model.safetensors.index.json", SHARD_1, SHARD_2]


def test_command_line_choice_beats_config() -> None:
    ex = Executors.from_choices((None, None), ("threads", None), 2)
    assert (ex.kind, ex.scheduler) == ("threads", None)
    ex = Executors.from_choices((None, "tcp://h:8786"), ("threads", None), 2)
    assert (ex.kind, ex.scheduler) == ("dask", "tcp://h:8786")
    ex = Executors.from_choices(("inline", None), ("dask", "tcp://h:8786"), 2)
    assert (ex.kind, ex.scheduler) == ("inline", None)
    ex = Executors.from_choices((None, None), (None, "tcp://h:8786"), 2)
    assert ex.kind == "dask"


def test_small_tensors_share_a_task(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = open_path(checkpoint)
    jobs = sorted(((la, p) for la in source.layers() for p in la.params), key=lambda j: -j[1].size)
    assert len(make_tasks("m", None, jobs, AnalysisOptions())) == 1
    monkeypatch.setattr(executor, "BATCH_ELEMS", 2000)
    tasks = make_tasks("m", None, jobs, AnalysisOptions())
    assert [len(t.jobs) for t in tasks] == [1, 1, 1, 1, 5]  # 2,688 .. 2,304 values alone; the rest share


def test_config_cannot_name_a_scheduler(tmp_path: Path) -> None:
    # A scheduler's workers send back pickles this process loads: only the person running the build picks one.
    text = "title: t\nexecutor: dask\nscheduler: tcp://h:8786\nmodels:\n  - {name: a, path: x}\n"
    with pytest.raises(ConfigError) as err:
        parse_config(text, tmp_path / "c.yaml")
    want = (
        "a config cannot choose a Dask scheduler (its workers run code in reportgen); "
        "pass --scheduler ADDRESS or set REPORTGEN_SCHEDULER=ADDRESS when you run the build"
    )
    assert str(err.value) == f"{tmp_path / 'c.yaml'}:3: scheduler: {want}"


def test_cli_rejects_scheduler_with_other_executor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["build", str(tmp_path / "c.yaml"), "--executor", "threads", "--scheduler", "tcp://h:8786"])
    assert code == 2
    assert "--scheduler needs --executor dask, not threads" in capsys.readouterr().err


def test_missing_dask_extra_is_a_config_error(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    source = open_path(checkpoint)
    recipe = reopen_recipe(source, checkpoint, None)
    want = r"optional 'dask' extra.*reportgen\[dask\]"
    with Executors("dask") as ex, pytest.raises(ConfigError, match=want):
        ex.analyze(source, source.layers(), AnalysisOptions(), recipe, "m")


class _Stop:
    """A progress callback that presses Ctrl-C after the first finished task."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, message: str, done: int, total: int) -> None:
        self.calls += 1
        raise KeyboardInterrupt


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["inline", "threads", "processes"])
def test_interrupt_cancels_outstanding_tasks(checkpoint: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "BATCH_ELEMS", 1)  # one task per tensor
    ran: list[str] = []
    real = executor.analyze_tensor

    def counting(source, layer, ref, options, part="all"):  # type: ignore[no-untyped-def]
        ran.append(ref.key)
        return real(source, layer, ref, options, part)

    monkeypatch.setattr(executor, "analyze_tensor", counting)
    source = open_path(checkpoint)
    recipe = reopen_recipe(source, checkpoint, None)
    stop = _Stop()
    ex = Executors(kind, workers=1 if kind == "threads" else 2)
    with pytest.raises(KeyboardInterrupt):
        ex.analyze(source, source.layers(), AnalysisOptions(), recipe, "m", stop)
    assert stop.calls == 1
    if kind == "processes":
        procs = list(ex.backend("processes").pool._processes.values())  # type: ignore[attr-defined]
        assert procs
        ex.close()
        assert not any(p.is_alive() for p in procs)
    else:
        ex.close()
        assert 1 <= len(ran) < 9, ran  # the queued tensors never ran


def test_workers_run_every_blas_single_threaded() -> None:
    """A fresh worker process limits BLAS before SciPy's own OpenBLAS is loaded, and that one too."""
    import os
    import subprocess
    import sys

    probe = (
        "from reportgen import processes\n"
        "processes.process_init()\n"
        "from scipy.linalg.blas import ssyrk\n"
        "from threadpoolctl import threadpool_info\n"
        "blas = [i for i in threadpool_info() if i['user_api'] == 'blas']\n"
        "print(len(blas), sorted({i['num_threads'] for i in blas}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    count, threads = done.stdout.split(" ", 1)
    assert int(count) >= 1 and threads.strip() == "[1]"
