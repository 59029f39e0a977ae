"""Data-parallel training over MPI, under ``mpiexec -n 2`` (tests/_mpi_worker.py).

Two ranks, each with its shard, must end with the parameters (float64, to
1e-12) and the history of a single-process fit whose every mini-batch is the
concatenation of the ranks' local mini-batches. A rank that fails stops the
whole job within seconds, with that rank's message. Skipped without mpi4py
and mpiexec (``pip install "crnn[mpi]"``).
"""

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import crnn

pytest.importorskip("mpi4py")
# The mpich wheel puts mpiexec beside the venv's python, which may not be on PATH.
MPIEXEC = shutil.which("mpiexec") or shutil.which(
    "mpiexec", path=os.path.dirname(sys.executable))
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _mpi_worker as worker  # noqa: E402
from conftest import subprocess_env  # noqa: E402


def _env():
    env = subprocess_env(HERE)
    env.pop("CRNN_NUM_THREADS", None)
    return env


def _mpiexec(*args, timeout=240):
    start = time.monotonic()
    proc = subprocess.run([MPIEXEC, "-n", "2", *args], capture_output=True, text=True,
                          env=_env(), timeout=timeout)
    return proc, time.monotonic() - start


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    out = tmp_path_factory.mktemp("mpi") / "fit.npz"
    proc, _ = _mpiexec(sys.executable, os.path.join(HERE, "_mpi_worker.py"), "fit", str(out))
    assert proc.returncode == 0, proc.stderr
    with np.load(out) as f:
        return {k: f[k] for k in f.files}


def _single_process(name):
    """The reference: one process, every mini-batch the ranks' local ones, concatenated."""
    cell, kw, fit_kw, per_step, ragged, shards = worker.CONFIGS[name]
    x, target, lengths, rows = worker.data(name)
    order = []
    for b in range(max(len(r) for r in rows) // worker.BATCH):
        for r in rows:
            order.extend(r[b * worker.BATCH:(b + 1) * worker.BATCH])
    order = np.array(order)
    model = worker.model(name)
    val_rows = np.concatenate([r[:3] for r in rows])
    tax = 1 if per_step else 0
    history = model.fit(x[:, order], np.take(target, order, axis=tax),
                        lengths=None if lengths is None else lengths[order], epochs=3,
                        batch_size=worker.BATCH * len(rows), shuffle=False, verbose=0,
                        validation_data=(x[:, val_rows], np.take(target, val_rows, axis=tax)),
                        **fit_kw)
    return model, history


@pytest.mark.parametrize("name", list(worker.CONFIGS))
def test_two_ranks_equal_one_process_on_the_concatenated_batches(fitted, name):
    model, history = _single_process(name)
    for k, v in model.params.items():
        got = fitted[f"{name}/{k}"]
        np.testing.assert_allclose(got, v, rtol=1e-12, atol=1e-12 * max(1, np.abs(v).max()),
                                   err_msg=k)
    for k, v in history.items():
        np.testing.assert_allclose(fitted[f"{name}/history/{k}"], v, rtol=1e-12, err_msg=k)
    # The check has teeth: training moved the parameters.
    assert any(not np.allclose(v, worker.model(name).params[k]) for k, v in model.params.items())


def test_each_rank_uses_its_share_of_the_node(tmp_path):
    out = tmp_path / "threads.npz"
    proc, _ = _mpiexec(sys.executable, os.path.join(HERE, "_mpi_worker.py"), "threads",
                       str(out))
    assert proc.returncode == 0, proc.stderr
    with np.load(out) as f:
        during, after = list(f["during"]), int(f["after"])
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    share = max(1, min(cpus // 2, crnn._engine.max_threads()))
    assert during == [share, share]
    assert after == min(cpus, crnn._engine.max_threads())      # restored after fit


@pytest.mark.parametrize("mode, words", [
    ("bad-input", ["rank 1", "NaN"]),                   # refused by every rank, rank 1's words
    ("raise", ["rank 1", "a callback failed on rank 1 only"]),      # the job is aborted
    ("diverge", ["differs between ranks"]),             # the checksum after each epoch
    ("non-finite", ["rank 1:", "non-finite loss"]),     # seen by all, named by rank
    ("memory", ["rank 1", "MemoryError"]),              # the job is aborted
])
def test_a_failing_rank_stops_the_whole_job_soon(tmp_path, mode, words):
    proc, seconds = _mpiexec(sys.executable, os.path.join(HERE, "_mpi_worker.py"), mode,
                             str(tmp_path / "unused"), timeout=60)
    assert proc.returncode != 0
    for word in words:
        assert word in proc.stderr, proc.stderr
    assert seconds < 30


def test_a_callback_stopping_one_rank_stops_every_rank(tmp_path):
    proc, _ = _mpiexec(sys.executable, os.path.join(HERE, "_mpi_worker.py"), "stop-on-1",
                       str(tmp_path / "unused"), timeout=60)
    assert proc.returncode == 0, proc.stderr


TEXT = "the quick brown fox jumps over the lazy dog.\n" * 40


def test_crnn_train_distributed_equals_one_process(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    args = ["train", str(text), "--steps", "12", "--hidden", "16", "--seq-len", "8",
            "--batch", "4", "--log-every", "4", "--sample-every", "0",
            "--checkpoint-every", "5"]
    proc, _ = _mpiexec(sys.executable, "-m", "crnn", *args, "--distributed", "--out",
                       str(tmp_path / "two.npz"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("step ") == 4            # rank 0 alone prints (steps 1, 4, 8, 12)
    assert "over 2 ranks" in proc.stdout
    single = subprocess.run([sys.executable, "-m", "crnn", *args, "--out",
                             str(tmp_path / "one.npz")], capture_output=True, text=True,
                            env=_env(), timeout=120)
    assert single.returncode == 0, single.stderr
    two, one = crnn.load(tmp_path / "two.npz"), crnn.load(tmp_path / "one.npz")
    for k, v in one.params.items():     # float32: the sum and the mean round differently
        np.testing.assert_allclose(two.params[k], v, rtol=1e-4, atol=1e-5, err_msg=k)
    assert sorted(os.listdir(tmp_path)) == ["one.npz", "t.txt", "two.npz"]


def test_import_crnn_never_imports_mpi4py():
    code = ("import sys, numpy as np, crnn; m = crnn.RNN(2, 3, 2); "
            "m.fit(np.zeros((3, 4, 2)), np.zeros(4, int), verbose=0); "
            "sys.exit('mpi4py imported' if 'mpi4py' in sys.modules else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr + proc.stdout


def test_comm_must_be_an_mpi_communicator():
    with pytest.raises(TypeError, match="comm"):
        crnn.RNN(2, 3, 2).fit(np.zeros((3, 4, 2)), np.zeros(4, int), verbose=0, comm=object())


@pytest.mark.skipif(os.name == "nt", reason="POSIX signals")
@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_crnn_train_distributed_stops_on_a_signal_and_saves(tmp_path, signum, status):
    """mpiexec passes the signal to every rank, each at its own point of a step: every
    rank stops after the same step, rank 0 saves, and the job ends (no rank is left
    waiting in an Allreduce)."""
    text = tmp_path / "t.txt"
    text.write_text(TEXT * 20)
    out = tmp_path / "m.npz"
    proc = subprocess.Popen([MPIEXEC, "-n", "2", sys.executable, "-m", "crnn", "train",
                             str(text), "--distributed", "--steps", "100000000", "--hidden",
                             "128", "--seq-len", "32", "--batch", "7", "--log-every", "20",
                             "--sample-every", "0", "--checkpoint-every", "0", "--out",
                             str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env())
    try:
        for line in proc.stdout:
            if line.startswith("step") and "/100000000" in line and " 1/" not in line:
                break
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == status, stderr
    assert "model saved" in stdout
    assert crnn.load(out).hidden_size == 128
