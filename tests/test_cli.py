"""The command line as a user meets it: help with examples, one-line errors, documented exit codes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from reportgen.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_exit_codes_and_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for code in ("0", "2", "3", "4", "5", "6", "7", "8", "130"):
        assert f"\n  {code:>3}  " in text
    for sub in ("build", "inspect", "diff"):
        with pytest.raises(SystemExit):
            main([sub, "--help"])
        assert f"reportgen {sub} " in capsys.readouterr().out.split("examples:")[1]


def test_usage_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "build", "x.yaml", "--format", "docx")
    assert code == 2
    assert err.strip().count("\n") == 0 and err.startswith("reportgen: error: reportgen build: argument -f/--format")


def test_missing_config(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "build", str(tmp_path / "none.yaml"))
    assert (code, err.strip()) == (3, f"reportgen: error: {tmp_path / 'none.yaml'}: no such config file")


def _config(tmp_path: Path, body: str) -> Path:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"title: t\noutput: {tmp_path / 'out'}\nformats: [json]\nmodels:\n{body}")
    return cfg


def test_weights_path_missing(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cfg = _config(tmp_path, "  - name: a\n    path: nothing.h5\n")
    code, _, err = run(capsys, "build", str(cfg))
    assert code == 4
    assert (
        err.strip() == f"reportgen: error: {cfg}:6: models[0].path: no such file or folder: {tmp_path / 'nothing.h5'}"
    )
    assert not (tmp_path / "out").exists()


def test_not_a_weights_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "notes.h5").write_text("just text\n")
    cfg = _config(tmp_path, "  - name: a\n    path: notes.h5\n")
    code, _, err = run(capsys, "build", str(cfg))
    assert code == 4
    assert err.startswith(f"reportgen: error: {cfg}:6: models[0].path: {tmp_path / 'notes.h5'}: not a weights file")
    assert err.count("\n") == 1 and not (tmp_path / "out").exists()


def _safetensors(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    tensors = {}
    for name, (fan_out, fan_in) in {"fc1": (64, 32), "fc2": (16, 64)}.items():
        bound = 1 / math.sqrt(fan_in)  # PyTorch's default Linear init
        tensors[f"{name}.weight"] = rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32)
        tensors[f"{name}.bias"] = rng.uniform(-bound, bound, (fan_out,)).astype(np.float32)
    save_file(tensors, str(path))
    return tensors


def test_glob_that_selects_nothing(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _safetensors(tmp_path / "m.safetensors")
    cfg = _config(tmp_path, "  - name: a\n    path: m.safetensors\n    layers:\n      - glob: 'block*'\n")
    code, _, err = run(capsys, "build", str(cfg))
    assert code == 5
    assert err.strip() == (
        f"reportgen: error: {cfg}:5: models[0].layers[0]: glob 'block*' selects no layer with weights "
        "in model 'a' (names look like: fc1, fc2)"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_pytorch_default_init_on_safetensors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _safetensors(tmp_path / "m.safetensors")
    cfg = _config(tmp_path, "  - name: torchy\n    path: m.safetensors\n    init: pytorch_default\n")
    code, out, _ = run(capsys, "build", str(cfg))
    assert code == 0 and "torchy: all 2 layers with a known initializer look untrained" in out
    doc = json.loads((tmp_path / "out" / "stats.json").read_text())
    layers = {layer["name"]: layer for layer in doc["models"][0]["layers"]}
    weight = layers["fc1"]["params"][0]
    assert weight["init"]["kind"] == "pytorch_default" and weight["init"]["fan_in"] == 32
    assert weight["init"]["limit"] == pytest.approx(1 / math.sqrt(32), rel=1e-12)
    assert layers["fc1"]["verdict"]["status"] == "at_init"


def test_inspect_json_matches_numpy(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    tensors = _safetensors(tmp_path / "m.safetensors")
    code, out, _ = run(capsys, "inspect", str(tmp_path / "m.safetensors"), "--json", "--filter", "fc2")
    assert code == 0
    doc = json.loads(out)
    assert [(t["layer"], t["param"]) for t in doc["tensors"]] == [("fc2", "weight"), ("fc2", "bias")]
    for t in doc["tensors"]:
        x = tensors[f"fc2.{t['param']}"].astype(np.float64)
        assert t["stats"]["std"] == pytest.approx(x.std(), rel=1e-9)
        assert t["stats"]["median"] == pytest.approx(np.median(x), rel=1e-9)


def test_inspect_table(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _safetensors(tmp_path / "m.safetensors")
    code, out, _ = run(capsys, "inspect", str(tmp_path / "m.safetensors"))
    lines = out.splitlines()
    assert code == 0 and lines[1] == "2 layers with weights, 4 tensors, 3,152 parameters"
    assert lines[3].split()[:4] == ["layer", "type", "param", "shape"]
    assert [line.split()[:3] for line in lines[5:9]] == [
        ["fc1", "Linear*", "weight"],
        ["fc1", "Linear*", "bias"],
        ["fc2", "Linear*", "weight"],
        ["fc2", "Linear*", "bias"],
    ]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["safetensors", "weights.h5"])
def test_inspect_never_imports_tensorflow(tmp_path: Path, kind: str) -> None:
    """A file that can be read directly is inspected without importing TensorFlow or Keras."""
    import subprocess
    import sys

    if kind == "safetensors":
        path = tmp_path / "m.safetensors"
        _safetensors(path)
    else:
        import h5py

        path = tmp_path / "m.weights.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("layers/dense/vars/0", data=np.ones((4, 3), dtype=np.float32))
            f.create_dataset("layers/dense/vars/1", data=np.zeros(3, dtype=np.float32))
    probe = (
        "import sys\n"
        "from reportgen.cli import main\n"
        f"code = main(['inspect', {str(path)!r}, '--json'])\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'torch') if m in sys.modules)\n"
        "print('HEAVY', code, heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "HEAVY 0 []"


def test_error_caused_by_ctrl_c_still_exits_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C inside an extension module's import surfaces as an ImportError: still an interrupt."""
    import os
    import signal
    import time

    from reportgen import cli

    def interrupted_import(args: object) -> int:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler raises KeyboardInterrupt long before this ends
        except KeyboardInterrupt:
            raise ImportError("initialization failed") from None
        raise AssertionError("SIGINT was not delivered")

    monkeypatch.setitem(cli.COMMANDS, "inspect", interrupted_import)
    code, _, err = run(capsys, "inspect", "anything.safetensors")
    assert code == 130 and err.strip() == cli.INTERRUPTED
    # the default handler is back afterwards
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    def plain_bug(args: object) -> int:
        raise ImportError("initialization failed")

    monkeypatch.setitem(cli.COMMANDS, "inspect", plain_bug)
    code, _, err = run(capsys, "inspect", "anything.safetensors")
    assert code == 1 and err.startswith("reportgen: internal error: ImportError")
