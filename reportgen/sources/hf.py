"""Resolve `hf:ORG/NAME[@revision][/subfolder]` to weights in the local Hugging Face cache.

The cache is looked at first, so a cached model is read without any network access; only what is
missing is downloaded, and only the weight files (safetensors before pickles). huggingface_hub is an
optional extra, imported when an hf: path is resolved.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reportgen.errors import QUIET_ENV_FLAG, NetworkError, SourceError

PREFIX = "hf:"
EXTRA_HINT = "pip install 'reportgen[hf]'"
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

# Weight files in order of preference: safetensors (no code, memory-mapped) before pickles before the rest.
_SINGLE_PREFERENCE = ("model.safetensors", "pytorch_model.bin", "tf_model.h5", "model.onnx")
_SHARD_INDEXES = (".safetensors.index.json", ".bin.index.json")
_KINDS = ((".safetensors",), (".bin", ".pt", ".pth"), (".h5", ".keras"), (".onnx",))


@dataclass(frozen=True)
class HfSpec:
    """A parsed hf: path."""

    repo_id: str  # ORG/NAME
    revision: str | None  # branch, tag or commit; None: the default branch
    subfolder: str  # "" for the repository root

    def __str__(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        sub = f"/{self.subfolder}" if self.subfolder else ""
        return f"{PREFIX}{self.repo_id}{rev}{sub}"


def parse_hf(value: str) -> HfSpec:
    """Parse 'hf:ORG/NAME[@revision][/subfolder]'; raise ValueError saying what is wrong."""
    body = value.removeprefix(PREFIX)
    parts = body.split("/")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ValueError(f"{value!r}: write hf:ORG/NAME, optionally @REVISION and /SUBFOLDER")
    org, name, rest = parts[0], parts[1], parts[2:]
    name, at, revision = name.partition("@")
    if not _PART.match(org) or not _PART.match(name):
        raise ValueError(f"{value!r}: {org}/{name} is not a Hugging Face repository id")
    if at and not _REVISION.match(revision):
        raise ValueError(f"{value!r}: revision {revision!r} is not a branch, tag or commit name")
    for part in rest:
        # The subfolder is joined to a cache folder: nothing may climb out of it.
        if part in ("", ".", "..") or "\\" in part:
            raise ValueError(f"{value!r}: subfolder {'/'.join(rest)!r} must be a plain relative path")
    return HfSpec(f"{org}/{name}", revision or None, "/".join(rest))


def _hub() -> Any:
    try:
        import huggingface_hub
        import huggingface_hub.constants  # a lazily loaded submodule: not an attribute until imported
    except ImportError:
        raise SourceError(f"hf: paths need the optional extra: {EXTRA_HINT}") from None
    if os.environ.get(QUIET_ENV_FLAG):
        # Its retry log lines would sit beside the one-line error that follows them.
        from huggingface_hub.utils import logging as hub_logging

        hub_logging.set_verbosity_error()  # configures its root logger first, which would reset a bare level
    return huggingface_hub


def cache_dir(hub: Any) -> Path:
    """Return the Hugging Face hub cache, honouring HF_HUB_CACHE and HF_HOME as set now."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(hub.constants.HF_HUB_CACHE)


def offline(hub: Any) -> bool:
    """Tell whether the user switched the hub off (HF_HUB_OFFLINE), as set now or at import."""
    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    return flag in ("1", "true", "yes", "on") or bool(getattr(hub.constants, "HF_HUB_OFFLINE", False))


def choose_weights(names: list[str]) -> list[str]:
    """Pick the files that hold a model's weights from a listing (relative names), best format first.

    A shard index comes with its shards; a single file is the preferred name if present, otherwise
    the only file of the best format. Returns [] when no listed file holds weights.
    """
    for suffix in _SHARD_INDEXES:
        indexes = sorted(n for n in names if n.endswith(suffix))
        if indexes:
            shard_suffix = suffix.removesuffix(".index.json")
            shards = sorted(n for n in names if n.endswith(shard_suffix))
            return [indexes[0], *shards]
        if suffix == ".safetensors.index.json":
            single = [n for n in names if n.endswith(".safetensors")]
            if single:
                return [_best(single)]
    for kinds in _KINDS:
        found = [n for n in names if n.endswith(kinds)]
        if found:
            return [_best(found)]
    return []


def _best(candidates: list[str]) -> str:
    for preferred in _SINGLE_PREFERENCE:
        if preferred in candidates:
            return preferred
    # Full-precision before variants such as model.fp16.safetensors: the shortest name, then alphabetical.
    return sorted(candidates, key=lambda n: (len(n), n))[0]


def _listing(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_file())


def fetch_command(spec: HfSpec, files: list[str] | None = None) -> str:
    """Return the command that puts this model in the cache on a connected machine."""
    rev = f" --revision {spec.revision}" if spec.revision else ""
    prefix = f"{spec.subfolder}/" if spec.subfolder else ""
    include = " ".join(f"'{prefix}{f}'" for f in files) if files else f"'{prefix}*.safetensors*' '{prefix}*.json'"
    return f"hf download {spec.repo_id}{rev} --include {include}"


def resolve_hf(value: str) -> Path:
    """Return the local path of the weights an hf: path names, downloading only when not cached."""
    try:
        spec = parse_hf(value)
    except ValueError as exc:
        raise SourceError(str(exc)) from None
    hub = _hub()
    cache = cache_dir(hub)
    found = _from_cache(hub, spec, cache)
    if found is not None:
        return found
    if offline(hub):
        raise NetworkError(
            f"{spec}: not in the Hugging Face cache {cache} and HF_HUB_OFFLINE is set; on a connected machine run "
            f"`{fetch_command(spec)}` and copy {cache / _repo_folder(spec)} here"
        )
    return _download(hub, spec, cache)


def _repo_folder(spec: HfSpec) -> str:
    return "models--" + spec.repo_id.replace("/", "--")


def _from_cache(hub: Any, spec: HfSpec, cache: Path) -> Path | None:
    """Return the cached weights of spec, or None when the cache lacks them."""
    try:
        snapshot = Path(
            hub.snapshot_download(spec.repo_id, revision=spec.revision, cache_dir=cache, local_files_only=True)
        )
    except Exception:  # any flavour of "not cached" (the class differs between huggingface_hub versions)
        return None
    return _pick(snapshot, spec)


def _pick(snapshot: Path, spec: HfSpec) -> Path | None:
    folder = snapshot / spec.subfolder if spec.subfolder else snapshot
    chosen = choose_weights(_listing(folder))
    if not chosen:
        return None
    if chosen[0].endswith(".bin.index.json"):
        raise SourceError(
            f"{spec}: weights are sharded PyTorch pickles ({chosen[0]}), which reportgen does not read; "
            "use a revision with safetensors"
        )
    missing = [name for name in chosen if not (folder / name).is_file()]
    if missing:
        return None
    # A shard index names the model; a folder of shards is read through it.
    return folder / chosen[0]


def _download(hub: Any, spec: HfSpec, cache: Path) -> Path:
    """List the repository, download its preferred weight files into the cache, return the local path."""
    errors = hub.errors if hasattr(hub, "errors") else hub.utils
    not_found = tuple(
        getattr(errors, n)
        for n in ("RepositoryNotFoundError", "RevisionNotFoundError", "GatedRepoError")
        if hasattr(errors, n)
    )
    try:
        names = hub.list_repo_files(spec.repo_id, revision=spec.revision)
    except not_found as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceError(f"{spec}: {type(exc).__name__}: {first}") from None
    except Exception as exc:  # connection refused, DNS, timeouts: the classes depend on the HTTP client
        raise NetworkError(
            f"{spec}: not in the Hugging Face cache {cache} and the Hub cannot be reached "
            f"({type(exc).__name__}); on a connected machine run `{fetch_command(spec)}` and copy "
            f"{cache / _repo_folder(spec)} here"
        ) from None
    prefix = f"{spec.subfolder}/" if spec.subfolder else ""
    inside = [n[len(prefix) :] for n in names if n.startswith(prefix) and "/" not in n[len(prefix) :]]
    chosen = choose_weights(inside)
    if not chosen:
        raise SourceError(f"{spec}: the repository holds no weight files (.safetensors, .bin, .h5, .onnx) there")
    try:
        snapshot = hub.snapshot_download(
            spec.repo_id, revision=spec.revision, cache_dir=cache, allow_patterns=[prefix + c for c in chosen]
        )
    except Exception as exc:
        raise NetworkError(
            f"{spec}: download failed ({type(exc).__name__}); on a connected machine run "
            f"`{fetch_command(spec, chosen)}` and copy {cache / _repo_folder(spec)} here"
        ) from None
    found = _pick(Path(snapshot), spec)
    if found is None:
        raise SourceError(f"{spec}: downloaded, but {', '.join(chosen)} did not arrive in {snapshot}")
    return found
