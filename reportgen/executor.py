"""Run the per-tensor analysis as tasks: inline, on threads, on a local process pool or on Dask."""

from __future__ import annotations

import functools
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reportgen.analysis import AnalysisOptions, Part, TensorAnalysis, analyze_tensor, merge_parts, wants_spectrum
from reportgen.errors import ConfigError, SourceError
from reportgen.init_draw import DrawnSource
from reportgen.processes import limit_blas, load_blas, private_mp_tempdir, process_init, quiet_start
from reportgen.sources.base import InitSpec, LayerInfo, LayerView, TensorRef, WeightSource
from reportgen.sources.formats import in_memory, reopenable
from reportgen.vocab import EXECUTOR_KINDS, ExecutorKind

Kind = ExecutorKind
KINDS: tuple[str, ...] = EXECUTOR_KINDS
Progress = Callable[[str, int, int], None]  # (message, done, total)
Job = tuple[LayerInfo, TensorRef]

DRAWN = "drawn"  # untrained tensors a worker draws itself from their initializers and the model's seed
DASK_RETRIES = 2  # a task that raised outside reportgen's own errors (a flaky mount) runs again
BATCH_ELEMS = 1 << 20  # small tensors share a task until it holds this many values: fewer round trips
BATCH_JOBS = 64
WORKER_CACHE = 4  # sources a worker keeps open; a build opens one model at a time
SCHEDULER_TIMEOUT_S = 30


@dataclass(frozen=True)
class ReopenRecipe:
    """What a worker needs to open a model's weights itself: format, path, init statement, file sizes."""

    format: str
    path: str  # absolute, as the config resolved it; workers must see the same path
    init: InitSpec | None  # the initializer statement as the config resolved it, reapplied on reopen
    files: tuple[tuple[str, int], ...]  # (path, size) of every input file, to notice a different copy
    seed: int | None = None  # format DRAWN: the seed the tensors are drawn with


@dataclass(frozen=True)
class Task:
    """A batch of one model's tensors, as metadata only: no array travels with it."""

    model: str
    recipe: ReopenRecipe | None
    jobs: tuple[Job, ...]
    options: AnalysisOptions
    part: Part = "all"  # a large tensor's "values" and "spectrum" go to two tasks that can run side by side


@dataclass(frozen=True)
class Failure:
    """A tensor that could not be read, returned as a value so Dask does not retry a sure failure."""

    message: str


@dataclass(frozen=True)
class ModelJobs:
    """One model's tensors to analyse, biggest first, and how workers reopen them."""

    source: WeightSource
    layers: tuple[LayerInfo, ...]
    recipe: ReopenRecipe | None
    label: str

    @functools.cached_property
    def jobs(self) -> tuple[Job, ...]:
        """Return every (layer, tensor), biggest first (big tensors first keep every worker busy to the end)."""
        jobs = [(layer, p) for layer in self.layers for p in layer.params]
        return tuple(sorted(jobs, key=lambda j: -j[1].size))


def reopen_recipe(source: WeightSource, path: Path | None, init: InitSpec | None) -> ReopenRecipe | None:
    """Return how a worker can reopen source, or None when it exists only in this process."""
    drawn = source
    while isinstance(drawn, LayerView):  # a source wrapped with an initializer plan or a filter
        drawn = drawn.inner
    if isinstance(drawn, DrawnSource):
        # Workers draw from the descriptions in their tasks: only where those are the ones drawn here.
        same = all(drawn.drawn_as(p).init == p.init for layer in source.layers() for p in layer.params)
        return ReopenRecipe(DRAWN, "", None, (), drawn.draw_seed) if same else None
    if path is None or in_memory(source.info.format):
        return None
    files = tuple((os.path.abspath(f), f.stat().st_size) for f in source.info.files if f.is_file())
    return ReopenRecipe(source.info.format, os.path.abspath(path), init, files)


def choose_kind(kind: str | None, recipe: ReopenRecipe | None, workers: int) -> Kind:
    """Pick the back end for one model: the asked one, or processes for files and threads in memory."""
    if recipe is None:
        # Arrays never travel to workers: a model built in this process is analysed here.
        return "inline" if kind == "inline" or workers == 1 else "threads"
    if kind is not None:
        assert kind in KINDS, kind
        return kind  # type: ignore[return-value]
    if workers == 1:
        return "inline"
    # formats.FORMATS says which formats a worker can reopen from their files alone.
    return "processes" if recipe.format == DRAWN or reopenable(recipe.format) else "threads"


def make_tasks(model: str, recipe: ReopenRecipe | None, jobs: Sequence[Job], options: AnalysisOptions) -> list[Task]:
    """Group jobs (biggest first) into tasks; a big tensor goes alone, small ones share.

    A streamed tensor with a spectrum becomes two tasks, its values and its spectrum, so that two
    workers share it; each part computes exactly what the whole task would, so the numbers are the same.
    """
    tasks: list[Task] = []
    batch: list[Job] = []
    elems = 0
    for job in jobs:
        if job[1].size > options.stream_elems and wants_spectrum(job[0], job[1], options):
            tasks.append(Task(model, recipe, (job,), options, "spectrum"))
            tasks.append(Task(model, recipe, (job,), options, "values"))
            continue
        batch.append(job)
        elems += job[1].size
        if elems >= BATCH_ELEMS or len(batch) >= BATCH_JOBS:
            tasks.append(Task(model, recipe, tuple(batch), options))
            batch, elems = [], 0
    if batch:
        tasks.append(Task(model, recipe, tuple(batch), options))
    return tasks


def _where(task: Task, job: Job) -> str:
    layer, ref = job
    return f"model {task.model!r}: layer {layer.name!r}: tensor {ref.name!r} ({ref.key})"


def run_task(task: Task, source: WeightSource | None = None) -> tuple[TensorAnalysis, ...] | Failure:
    """Analyse a task's tensors, reopening the source from its recipe when none is given."""
    if source is None:
        assert task.recipe is not None
        try:
            source = _reopen(task.recipe)
        except SourceError as exc:
            return Failure(f"{_where(task, task.jobs[0])}: {exc}")
    out = []
    for job in task.jobs:
        try:
            out.append(analyze_tensor(source, job[0], job[1], task.options, task.part))
        except (SourceError, OSError) as exc:
            return Failure(f"{_where(task, job)}: {exc}")
    return tuple(out)


# ---------------------------------------------------------------------------- inside a worker process

_cache: OrderedDict[tuple[ReopenRecipe, tuple[tuple[int, int], ...]], WeightSource] = OrderedDict()
_cache_lock = threading.Lock()


def _reopen(recipe: ReopenRecipe) -> WeightSource:
    """Return the recipe's source, opened once per worker and reopened if a file changed."""
    from reportgen.sources.detect import open_path

    if recipe.format == DRAWN:
        assert recipe.seed is not None
        return DrawnSource(recipe.seed)  # the tasks carry every tensor's description
    stamps = []
    for name, size in recipe.files:
        try:
            st = os.stat(name)
        except OSError as exc:
            raise SourceError(f"{name}: not visible to this worker ({exc.strerror or exc})") from None
        if st.st_size != size:
            raise SourceError(f"{name}: this worker sees {st.st_size} bytes, the client saw {size}")
        stamps.append((st.st_size, st.st_mtime_ns))
    key = (recipe, tuple(stamps))
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        source = open_path(recipe.path, init=recipe.init)
        if source.info.format != recipe.format:
            source.close()
            raise SourceError(f"{recipe.path}: this worker reads it as {source.info.format}, not {recipe.format}")
        _cache[key] = source
        while len(_cache) > WORKER_CACHE:
            _cache.popitem(last=False)[1].close()
        return source


def run_remote(task: Task) -> tuple[TensorAnalysis, ...] | Failure:
    """Analyse a task in a worker process, reopening its source there."""
    limit_blas()
    return run_task(task)


# ---------------------------------------------------------------------------- back ends


class Backend:
    """Run tasks and yield (task, result) pairs as they finish; cancel the rest when stopped."""

    def run(self, tasks: list[Task], source: WeightSource) -> Generator[tuple[Task, Any], None, None]:
        """Yield every task with its result, in completion order."""
        raise NotImplementedError

    def close(self) -> None:
        """Release workers."""


def _single_blas() -> AbstractContextManager[object]:
    from threadpoolctl import threadpool_limits

    load_blas()

    # Every back end computes with one BLAS thread, so the numbers match whichever ran them.
    return threadpool_limits(limits=1, user_api="blas")


class InlineBackend(Backend):
    """Run tasks one after another in this process."""

    def run(self, tasks: list[Task], source: WeightSource) -> Generator[tuple[Task, Any], None, None]:
        """Yield each task's result as it is computed."""
        with _single_blas():
            for task in tasks:
                yield task, run_task(task, source)


class ThreadBackend(Backend):
    """Run tasks on a thread pool sharing this process's open source; NumPy releases the GIL."""

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def run(self, tasks: list[Task], source: WeightSource) -> Generator[tuple[Task, Any], None, None]:
        """Yield results as the threads finish them."""
        with _single_blas():
            pool = ThreadPoolExecutor(max_workers=self.workers)
            try:
                futures = {pool.submit(run_task, t, source): t for t in tasks}
                yield from _as_completed(futures)
            except BaseException:
                # Ctrl-C or a failed tensor: drop queued work instead of finishing the model.
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown()


def _as_completed(futures: dict[Future[Any], Task]) -> Generator[tuple[Task, Any], None, None]:
    pending = set(futures)
    while pending:
        # A timeout lets Ctrl-C through on every platform while we wait.
        done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
        for f in done:
            yield futures[f], f.result()


class ProcessBackend(Backend):
    """Run tasks on a local process pool whose workers reopen the files themselves."""

    def __init__(self, workers: int) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # Never fork: TensorFlow or BLAS threads may be running here, and a forked copy can hang.
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        ctx = multiprocessing.get_context(method)
        if method == "forkserver":
            private_mp_tempdir()
            # The fork server is a child of this process; its preload makes it (and so, in turn, the
            # workers it forks) exit when this process dies, even by kill -9.
            ctx.set_forkserver_preload(["reportgen.executor", "reportgen._forkserver"])
        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=process_init)

    def run(self, tasks: list[Task], source: WeightSource) -> Generator[tuple[Task, Any], None, None]:
        """Yield results as the worker processes finish them."""
        from concurrent.futures.process import BrokenProcessPool

        with quiet_start():  # submit() starts the worker processes
            futures = {self.pool.submit(run_remote, t): t for t in tasks}
        try:
            yield from _as_completed(futures)
        except BrokenProcessPool:
            self.close()
            raise SourceError(
                f"model {tasks[0].model!r}: a worker process died (out of memory? a script calling "
                "reportgen without an `if __name__ == '__main__':` guard?); try fewer --workers or "
                "--executor threads"
            ) from None
        except BaseException:
            for f in futures:
                f.cancel()
            raise

    def close(self) -> None:
        """Stop the workers now, even mid-task: an interrupted build should exit at once."""
        procs = list((getattr(self.pool, "_processes", None) or {}).values())
        self.pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(5)


class DaskBackend(Backend):
    """Run tasks on a dask.distributed cluster: the one at scheduler, or a local one started here."""

    def __init__(self, scheduler: str | None, workers: int) -> None:
        try:
            import distributed
        except ImportError:
            raise ConfigError("executor dask needs the optional 'dask' extra: pip install 'reportgen[dask]'") from None
        self.cluster = None
        if scheduler:
            try:
                self.client = distributed.Client(scheduler, timeout=SCHEDULER_TIMEOUT_S)
            except (OSError, TimeoutError) as exc:
                raise ConfigError(f"cannot connect to the Dask scheduler at {scheduler}: {exc}") from None
            try:
                self.client.wait_for_workers(1, timeout=SCHEDULER_TIMEOUT_S)
            except (OSError, TimeoutError):
                self.client.close()
                raise ConfigError(
                    f"no Dask worker joined the scheduler at {scheduler} within {SCHEDULER_TIMEOUT_S} s"
                ) from None
        else:
            import logging

            import dask

            # Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, which also turns off glibc's
            # adaptive mmap threshold: every temporary array of a chunk is then mapped, zero-filled and
            # unmapped again, and the same analysis took 1.9-2.1x the CPU seconds of the process pool.
            unset_trim = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
            with quiet_start(), dask.config.set(unset_trim):
                self.cluster = distributed.LocalCluster(
                    # Port 0 everywhere: several builds on one machine must not fight over 8786/8787.
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    scheduler_port=0,
                    dashboard_address=":0",
                    silence_logs=logging.ERROR,
                )
                self.client = distributed.Client(self.cluster)

    def run(self, tasks: list[Task], source: WeightSource) -> Generator[tuple[Task, Any], None, None]:
        """Yield results as the cluster finishes them; a task whose worker died is rescheduled."""
        import distributed

        futures = {}
        for i, t in enumerate(tasks):
            # pure=False: two builds sharing a cluster never share (or cancel) each other's tasks.
            f = self.client.submit(run_remote, t, pure=False, retries=DASK_RETRIES, priority=len(tasks) - i)
            futures[f] = t
        try:
            for f, result in distributed.as_completed(futures, with_results=True):
                yield futures[f], result
        except BaseException as exc:
            self.client.cancel(list(futures))
            if type(exc).__name__ == "KilledWorker":
                raise SourceError(
                    f"model {tasks[0].model!r}: Dask workers kept dying on one task (out of memory?): {exc}"
                ) from None
            raise

    def close(self) -> None:
        """Disconnect, and stop the local cluster if this build started it."""
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


# ---------------------------------------------------------------------------- what the pipeline calls


class Executors:
    """The back ends of one build: each started on first use, all closed at the end."""

    def __init__(self, kind: str | None = None, scheduler: str | None = None, workers: int = 0) -> None:
        if kind is not None and kind not in KINDS:
            raise ConfigError(f"unknown executor {kind!r}; choose one of {', '.join(KINDS)}")
        self.kind = kind
        self.scheduler = scheduler
        self.workers = workers or (os.cpu_count() or 1)
        self._started: dict[str, Backend] = {}

    @classmethod
    def from_choices(
        cls, command_line: tuple[str | None, str | None], config: tuple[str | None, str | None], workers: int
    ) -> Executors:
        """Return executors for (executor, scheduler) from the command line if given, else the config."""
        kind, scheduler = command_line if any(x is not None for x in command_line) else config
        # A scheduler address alone means Dask.
        return cls(kind or ("dask" if scheduler else None), scheduler, workers)

    def backend(self, kind: Kind) -> Backend:
        """Return the running back end of this kind, starting it if needed."""
        if kind not in self._started:
            if kind == "inline":
                self._started[kind] = InlineBackend()
            elif kind == "threads":
                self._started[kind] = ThreadBackend(self.workers)
            elif kind == "processes":
                self._started[kind] = ProcessBackend(self.workers)
            else:
                self._started[kind] = DaskBackend(self.scheduler, self.workers)
        return self._started[kind]

    def analyze(
        self,
        source: WeightSource,
        layers: Sequence[LayerInfo],
        options: AnalysisOptions,
        recipe: ReopenRecipe | None,
        label: str,
        progress: Progress | None = None,
    ) -> dict[tuple[str, str], TensorAnalysis]:
        """Analyse every tensor of every layer, biggest first; keys are (layer name, param name)."""
        return self.analyze_many([ModelJobs(source, tuple(layers), recipe, label)], options, progress)[0]

    def analyze_many(
        self, models: Sequence[ModelJobs], options: AnalysisOptions, progress: Progress | None = None
    ) -> list[dict[tuple[str, str], TensorAnalysis]]:
        """Analyse several models; those whose workers reopen their tensors share one queue, biggest first.

        One queue keeps every worker busy: while one works on a large tensor of the first model, the others
        go on with the next model instead of waiting for it.
        """
        kinds = [self._kind(m) for m in models]
        shared = [i for i, k in enumerate(kinds) if k in ("processes", "dask")]
        groups = [shared] if len(set(kinds[i] for i in shared)) == 1 and len(shared) > 1 else []
        groups += [[i] for i in range(len(models)) if not groups or i not in groups[0]]
        total = sum(len(m.jobs) for m in models)
        out: list[dict[tuple[str, str], TensorAnalysis]] = [{} for _ in models]
        done = [0]
        for group in sorted(groups):
            found = self._run_group([models[i] for i in group], kinds[group[0]], options, progress, done, total)
            for i, result in zip(group, found, strict=True):
                out[i] = result
        return out

    def _kind(self, model: ModelJobs) -> Kind:
        kind = choose_kind(self.kind, model.recipe, self.workers)
        return "inline" if len(model.jobs) <= 1 and kind == "threads" else kind

    def _run_group(
        self,
        models: Sequence[ModelJobs],
        kind: Kind,
        options: AnalysisOptions,
        progress: Progress | None,
        done: list[int],
        total: int,
    ) -> list[dict[tuple[str, str], TensorAnalysis]]:
        """Run the tasks of models (one model, or several that reopen their tensors) on one back end."""
        owner: dict[int, int] = {}
        tasks: list[Task] = []
        for i, m in enumerate(models):
            for task in make_tasks(m.label, m.recipe, m.jobs, options):
                owner[id(task)] = i
                tasks.append(task)
        # Stable: a split tensor's spectrum stays ahead of its values, and each model's order is kept.
        tasks.sort(key=lambda t: -t.jobs[0][1].size)
        found: list[dict[tuple[str, str], TensorAnalysis]] = [{} for _ in models]
        halves: dict[tuple[int, str, str], TensorAnalysis] = {}  # the first part to finish of a split tensor
        # closing(): leaving the loop early (a failure, Ctrl-C) cancels the tasks still queued.
        with closing(self.backend(kind).run(tasks, models[0].source)) as results:
            for task, result in results:
                if isinstance(result, Failure):
                    raise SourceError(result.message)
                i = owner[id(task)]
                for (layer, ref), analysis in zip(task.jobs, result, strict=True):
                    key = (layer.name, ref.name)
                    if task.part != "all":
                        first = halves.pop((i, *key), None)
                        if first is None:
                            halves[(i, *key)] = analysis
                            continue
                        values, spectrum = (analysis, first) if task.part == "values" else (first, analysis)
                        analysis = merge_parts(values, spectrum)
                    found[i][key] = analysis
                    done[0] += 1
                if progress:
                    progress(f"{task.model}: {task.jobs[-1][0].name}", done[0], total)
        # Job order, not completion order: the report must not depend on which worker was fastest.
        return [
            {(layer.name, ref.name): f[(layer.name, ref.name)] for layer, ref in m.jobs} for m, f in zip(models, found)
        ]

    def close(self) -> None:
        """Close every started back end."""
        started, self._started = self._started, {}
        for backend in started.values():
            backend.close()

    def __enter__(self) -> Executors:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "KINDS",
    "Executors",
    "Failure",
    "Kind",
    "ModelJobs",
    "ReopenRecipe",
    "Task",
    "choose_kind",
    "make_tasks",
    "reopen_recipe",
    "run_remote",
    "run_task",
]
