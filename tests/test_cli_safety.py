"""The ``crnn`` command loses nothing and says clearly what went wrong.

It never writes over the training text or a file that is not a crnn model;
it checks that the model can be saved before training; a later failure to
save keeps the model elsewhere and says where; SIGTERM saves as Ctrl-C does;
crafted model files and vocabularies give one line; samples stream.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import crnn
from crnn import cli
from crnn.model import _Network
from conftest import subprocess_env
from test_cli import TEXT, TINY, _one_line_error


def _popen(*args):
    return subprocess.Popen([sys.executable, "-m", "crnn", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=subprocess_env())


# -- 1. --out never destroys the user's files --------------------------------------------

def test_out_refuses_the_training_text(text_file, capsys):
    status = cli.main(["train", str(text_file), *TINY, "--out", str(text_file)])
    captured = capsys.readouterr()
    _one_line_error(status, captured.err)
    assert "training text" in captured.err
    assert text_file.read_text(encoding="utf-8") == TEXT
    assert "step" not in captured.out       # refused before training


def test_out_refuses_a_link_to_the_training_text(tmp_path, text_file, capsys):
    link = tmp_path / "link.npz"
    link.symlink_to(text_file)
    status = cli.main(["train", str(text_file), *TINY, "--out", str(link)])
    _one_line_error(status, capsys.readouterr().err)
    assert text_file.read_text(encoding="utf-8") == TEXT


@pytest.mark.parametrize("content", [b"my notes\n", b"", b"PK\x03\x04 not really"])
def test_out_refuses_an_existing_file_that_is_not_a_model(tmp_path, text_file, capsys,
                                                         content):
    other = tmp_path / "notes.npz"
    other.write_bytes(content)
    status = cli.main(["train", str(text_file), *TINY, "--out", str(other)])
    captured = capsys.readouterr()
    _one_line_error(status, captured.err)
    assert "not a crnn model" in captured.err
    assert other.read_bytes() == content


def test_out_refuses_an_npz_that_is_not_a_crnn_model(tmp_path, text_file, capsys):
    other = tmp_path / "data.npz"
    np.savez(other, a=np.arange(3))
    before = other.read_bytes()
    status = cli.main(["train", str(text_file), *TINY, "--out", str(other)])
    _one_line_error(status, capsys.readouterr().err)
    assert other.read_bytes() == before


def test_out_may_replace_another_crnn_model(tmp_path, text_file, capsys):
    out = tmp_path / "m.npz"
    crnn.GRU(3, 4, 2).save(out)
    assert cli.main(["train", str(text_file), *TINY, "--out", str(out)]) == 0
    assert isinstance(crnn.load(out), crnn.RNN)


# -- 2. an output that cannot be written ---------------------------------------------------

@pytest.mark.parametrize("out", ["/proc/m.npz", "/sys/m.npz"])
def test_unwritable_out_fails_before_training(text_file, capsys, out):
    if not os.path.isdir(os.path.dirname(out)):
        pytest.skip(f"no {os.path.dirname(out)} here")
    status = cli.main(["train", str(text_file), *TINY, "--out", out])
    captured = capsys.readouterr()
    _one_line_error(status, captured.err)
    assert "--out" in captured.err
    assert "step" not in captured.out


def test_a_later_failure_to_save_keeps_the_model_elsewhere(tmp_path, text_file, capsys,
                                                          monkeypatch):
    out = tmp_path / "m.npz"
    real_save = _Network._save

    def full_disk(self, path, **extra):
        if os.fspath(path) == str(out):
            raise OSError(28, "No space left on device")
        return real_save(self, path, **extra)

    monkeypatch.setattr(_Network, "_save", full_disk)
    status = cli.main(["train", str(text_file), *TINY, "--out", str(out)])
    err = capsys.readouterr().err
    _one_line_error(status, err)
    assert "No space left on device" in err
    fallback = err.split("saved it to ")[1].split("'")[1]
    try:
        model, vocab = cli._load_checkpoint(fallback)
        assert model.hidden_size == 16 and set(vocab) == set(TEXT)
    finally:
        os.unlink(fallback)
        os.rmdir(os.path.dirname(fallback))     # a fresh folder of its own


# -- 3. SIGTERM ------------------------------------------------------------------------

def _wait_for(proc, pattern, seconds=60):
    """Lines of proc's stdout up to one containing ``pattern``."""
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        if not line:
            break
        seen.append(line)
        if pattern in line:
            return seen
    proc.kill()
    raise AssertionError(f"no {pattern!r} in the output, which ends {seen[-5:]}")


@pytest.mark.skipif(os.name == "nt", reason="POSIX signals")
def test_sigterm_saves_the_model_and_exits_143(tmp_path, text_file):
    out = tmp_path / "m.npz"
    proc = _popen("train", str(text_file), "--steps", "1000000", "--hidden", "16",
                  "--seq-len", "8", "--batch", "4", "--log-every", "50", "--sample-every", "0",
                  "--checkpoint-every", "0", "--out", str(out))
    _wait_for(proc, " 100/1000000")
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert b"terminated at step" in stdout and b"Traceback" not in stderr
    model, vocab = cli._load_checkpoint(out)
    assert model.hidden_size == 16


# -- 7, 8. crafted and broken model files ------------------------------------------------

def _with_vocab(path, vocab_json):
    model, _ = cli._load_checkpoint(path)
    model._save(path, vocab=np.array(vocab_json))


@pytest.mark.parametrize("kind", ["nested", "surrogate", "not-a-string", "too-short"])
def test_crafted_vocabularies_give_one_line(trained, capsys, kind):
    _, vocab = cli._load_checkpoint(trained)
    crafted = {"nested": "[" * 100_000 + "]" * 100_000,
               # distinct, sorted and of the right length: only the surrogate is wrong
               "surrogate": json.dumps(vocab[:-1] + "\ud800"),
               "not-a-string": json.dumps(list(vocab)),
               "too-short": json.dumps(vocab[:-1])}[kind]
    _with_vocab(trained, crafted)
    status = cli.main(["sample", str(trained), "--length", "20", "--seed", "0"])
    _one_line_error(status, capsys.readouterr().err)


def test_sample_refuses_non_finite_weights(trained, capsys):
    model, vocab = cli._load_checkpoint(trained)
    model.params["W_h"][0, 0] = np.nan
    model._save(trained, vocab=np.array(json.dumps(vocab)))
    status = cli.main(["sample", str(trained), "--length", "20", "--seed", "0"])
    err = capsys.readouterr().err
    _one_line_error(status, err)
    assert "NaN" in err


# -- 9. greedy sampling ----------------------------------------------------------------

def test_temperature_zero_is_greedy(trained, capsys):
    texts = set()
    for seed in ("1", "2"):
        assert cli.main(["sample", str(trained), "--length", "40", "--temperature", "0",
                         "--prime", "the", "--seed", seed]) == 0
        texts.add(capsys.readouterr().out)
    model, vocab = cli._load_checkpoint(trained)
    greedy = model.generate(40, prime=[vocab.index(c) for c in "the"], temperature=0)
    assert texts == {"the" + "".join(vocab[i] for i in greedy) + "\n"}


# -- 15. divergence --------------------------------------------------------------------

def test_a_diverging_run_is_flagged(tmp_path, text_file, capsys):
    out = tmp_path / "m.npz"
    status = cli.main(["train", str(text_file), "--steps", "30", "--hidden", "16",
                       "--seq-len", "8", "--batch", "4", "--lr", "1e6", "--log-every", "10",
                       "--sample-every", "0", "--out", str(out)])
    captured = capsys.readouterr()
    assert status == 0
    warning = [line for line in captured.err.splitlines() if "diverged" in line]
    assert len(warning) == 1 and "--lr" in warning[0]


def test_a_healthy_run_is_not_flagged(trained, tmp_path, text_file, capsys):
    assert cli.main(["train", str(text_file), *TINY, "--out", str(tmp_path / "n.npz")]) == 0
    assert "diverged" not in capsys.readouterr().err


# -- 17. samples stream ----------------------------------------------------------------

@pytest.mark.skipif(os.name == "nt", reason="POSIX signals")
def test_sample_streams_and_ctrl_c_keeps_what_was_printed(trained):
    # Ten million characters take minutes: the first ones must show at once.
    proc = _popen("sample", str(trained), "--length", "10000000", "--prime", "the",
                  "--seed", "0")
    got = []
    reader = threading.Thread(target=lambda: got.append(proc.stdout.read(200)))
    reader.start()
    reader.join(timeout=30)
    if reader.is_alive():
        proc.kill()
        reader.join()
        pytest.fail("nothing printed within 30 s")
    proc.send_signal(signal.SIGINT)
    rest, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    text = (got[0] + rest).decode()
    assert text.startswith("the") and len(text) >= 200
    assert b"Traceback" not in stderr


# -- 18. a byte-order mark ---------------------------------------------------------------

def test_a_byte_order_mark_is_not_a_character(tmp_path, capsys):
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeff".encode() + TEXT.encode())
    out = tmp_path / "m.npz"
    assert cli.main(["train", str(path), *TINY, "--out", str(out)]) == 0
    _, vocab = cli._load_checkpoint(out)
    assert vocab == "".join(sorted(set(TEXT)))
