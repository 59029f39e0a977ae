"""The ``crnn`` command: train on a tiny file, sample from the model, and fail cleanly.

Most checks call ``crnn.cli.main`` in-process; a few run ``python -m crnn``
in a subprocess to check the real entry point, exit status and stderr.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import crnn
from crnn import cli
from conftest import subprocess_env

TEXT = "the quick brown fox jumps over the lazy dog.\n" * 20
TINY = ["--steps", "6", "--hidden", "16", "--seq-len", "8", "--batch", "4", "--lr", "0.01",
        "--log-every", "2", "--sample-every", "3", "--checkpoint-every", "2"]


def _run_module(*args, cwd=None):
    """``python -m crnn ARGS`` with the crnn under test importable."""
    return subprocess.run([sys.executable, "-m", "crnn", *args], capture_output=True,
                          text=True, env=subprocess_env(), cwd=cwd, timeout=120)


def _one_line_error(status, err):
    assert status not in (0, None)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "error" in lines[0]


def test_train_prints_progress_samples_and_saves(tmp_path, text_file, capsys):
    out = tmp_path / "m.npz"
    assert cli.main(["train", str(text_file), *TINY, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "nats/char" in printed and "steps/s" in printed
    assert printed.count("--- sample at step") == 2
    assert f"model saved to {out}" in printed
    model = crnn.load(out)          # the checkpoint is an ordinary crnn model file
    vocab = sorted(set(TEXT))
    assert (model.input_size, model.hidden_size, model.output_size) == (len(vocab), 16, len(vocab))
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_training_lowers_the_loss(tmp_path, text_file, capsys):
    args = ["train", str(text_file), "--steps", "60", "--hidden", "32", "--seq-len", "16",
            "--batch", "4", "--lr", "0.01", "--log-every", "20", "--sample-every", "0",
            "--out", str(tmp_path / "m.npz")]
    assert cli.main(args) == 0
    losses = [float(line.split("loss ")[1].split()[0])
              for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]
    assert len(losses) == 4
    assert losses[-1] < 0.5 * losses[0]


def test_sample_is_deterministic_with_a_seed(trained, capsys):
    args = ["sample", str(trained), "--length", "40", "--seed", "7"]
    assert cli.main(args) == 0
    first = capsys.readouterr().out
    assert cli.main(args) == 0
    assert capsys.readouterr().out == first
    assert len(first) == 40 + 1                     # the sample and a newline
    assert set(first) <= set(TEXT)


def test_sample_prints_the_prime_first(trained, capsys):
    assert cli.main(["sample", str(trained), "--length", "10", "--prime", "the ",
                     "--temperature", "0.5", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("the ") and len(printed) == 4 + 10 + 1


def test_ctrl_c_saves_the_model(tmp_path, text_file, capsys, monkeypatch):
    calls = []
    real_next = cli._Streams.next

    def interrupted(self):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_next(self)

    monkeypatch.setattr(cli._Streams, "next", interrupted)
    out = tmp_path / "m.npz"
    args = ["train", str(text_file), *TINY, "--checkpoint-every", "0", "--out", str(out)]
    assert cli.main(args) == 130
    assert "interrupted at step 4" in capsys.readouterr().out
    assert crnn.load(out).hidden_size == 16


def test_non_finite_gradients_stop_training_keeping_the_checkpoint(tmp_path, text_file,
                                                                   capsys, monkeypatch):
    from crnn import _fused
    calls = []
    real_step = _fused.step

    def exploding(model, W, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            W[0] = np.inf       # the weights blow up: a non-finite loss and gradients
        return real_step(model, W, *args, **kwargs)

    monkeypatch.setattr(_fused, "step", exploding)
    out = tmp_path / "m.npz"
    status = cli.main(["train", str(text_file), *TINY, "--out", str(out)])
    _one_line_error(status, capsys.readouterr().err)
    saved = crnn.load(out)          # the checkpoint of step 2
    assert all(np.isfinite(p).all() for p in saved.params.values())


def test_python_m_crnn_trains_and_samples(tmp_path, text_file):
    out = tmp_path / "m.npz"
    done = _run_module("train", str(text_file), *TINY, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "nats/char" in done.stdout
    first = _run_module("sample", str(out), "--length", "30", "--seed", "3")
    second = _run_module("sample", str(out), "--length", "30", "--seed", "3")
    assert first.returncode == second.returncode == 0
    assert first.stdout == second.stdout and len(first.stdout) == 31


@pytest.mark.parametrize("command", [[], ["train"], ["sample"], ["bench"]])
def test_help(command, capsys):
    assert cli.main([*command, "--help"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("usage: crnn")


def test_help_and_version_from_the_module():
    done = _run_module("--help")
    assert done.returncode == 0 and "train" in done.stdout and "sample" in done.stdout
    done = _run_module("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"crnn {crnn.__version__}"


def _bad_files(tmp_path, trained):
    """Files that ``crnn`` must refuse, by name."""
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 this is not a zip archive")
    plain = tmp_path / "plain.npz"
    crnn.RNN(3, 4, 3, seed=0).save(plain)           # a crnn model, but no vocabulary
    regression = tmp_path / "linear.npz"
    crnn.RNN(3, 4, 1, output="linear", seed=0).save(regression)
    binary = tmp_path / "binary.txt"
    binary.write_bytes(bytes(range(256)) * 8)
    short = tmp_path / "short.txt"
    short.write_text("abc", encoding="utf-8")
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    return {"model": str(trained), "corrupt": str(corrupt), "plain": str(plain),
            "linear": str(regression), "binary": str(binary), "short": str(short),
            "empty": str(empty), "missing": str(tmp_path / "missing"),
            "folder": str(tmp_path), "no_folder": str(tmp_path / "nowhere" / "m.npz")}


BAD = [
    ["frobnicate"],
    ["train", "--steps", "0"],
    ["train", "--steps", "many"],
    ["train", "--lr", "-1"],
    ["train", "--lr", "nan"],
    ["train", "--seed", "-3"],
    ["train", "--bogus"],
    ["train", "{missing}"],
    ["train", "{folder}"],
    ["train", "{binary}"],
    ["train", "{short}"],
    ["train", "{empty}"],
    ["train", "{short}", "--seq-len", "1", "--batch", "1", "--out", "{no_folder}"],
    ["train", "{short}", "--seq-len", "1", "--batch", "1", "--out", "{folder}"],
    ["sample"],
    ["sample", "{missing}"],
    ["sample", "{folder}"],
    ["sample", "{corrupt}"],
    ["sample", "{binary}"],
    ["sample", "{plain}"],
    ["sample", "{linear}"],
    ["sample", "{model}", "--prime", "THE FOX"],
    ["sample", "{model}", "--temperature", "-0.5"],
    ["sample", "{model}", "--length", "-5"],
    ["sample", "{model}", "extra"],
]


@pytest.mark.parametrize("args", BAD, ids=[" ".join(a) for a in BAD])
def test_bad_arguments_and_files_give_one_line(args, tmp_path, trained, capsys):
    files = _bad_files(tmp_path, trained)
    status = cli.main([a.format(**files) for a in args])
    captured = capsys.readouterr()
    _one_line_error(status, captured.err)


def test_unknown_prime_characters_are_named(trained, capsys):
    assert cli.main(["sample", str(trained), "--prime", "XYZ"]) == 1
    assert "'XYZ'" in capsys.readouterr().err


def test_errors_from_the_module_have_no_traceback(tmp_path):
    done = _run_module("sample", str(tmp_path / "missing.npz"))
    assert done.returncode == 1 and done.stdout == ""
    _one_line_error(done.returncode, done.stderr)
    done = _run_module("train", "--hidden", "0")
    assert done.returncode == 2
    _one_line_error(done.returncode, done.stderr)


def test_bench_without_the_benchmarks_fails_cleanly(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_find_bench", lambda: None)
    status = cli.main(["bench"])
    captured = capsys.readouterr()
    _one_line_error(status, captured.err)
    assert "bench_train.py" in captured.err


def test_vocabulary_round_trip():
    from crnn import _corpus

    text = "héllo, wörld — ∑ 🙂\n"
    vocab = _corpus.make_vocab(text)
    ids = _corpus.encode(text, vocab)
    assert ids.dtype == np.intp and _corpus.decode(ids, vocab) == text
    with pytest.raises(ValueError, match="'Z'"):
        _corpus.encode("Z", vocab)
