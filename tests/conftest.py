"""Shared, deterministic helpers for crnn's tests: models, data, parameter snapshots.

Every random number comes from a generator seeded from the test's own key
(``rng_for(...)``), so each test sees the same numbers on every run and in
any order.
"""

import os
import zlib

import numpy as np
import pytest

import crnn

import _reference as ref

PARAM_NAMES = ref.PARAM_NAMES
BASE_SEED = 20240517


def rng_for(*key):
    """A numpy Generator seeded from ``key`` (stable across runs and processes)."""
    return np.random.default_rng([BASE_SEED, zlib.crc32(repr(key).encode())])


def make_model(D, H, O, *, nonlinearity="tanh", output="softmax", dtype="float64",
               rng=None, scale=None, seed=0):
    """A crnn.RNN; with ``rng``, its params are redrawn uniform(-scale, scale) in place."""
    model = crnn.RNN(D, H, O, nonlinearity=nonlinearity, output=output, dtype=dtype,
                     seed=seed)
    if rng is not None:
        s = 1.0 / np.sqrt(H) if scale is None else scale
        for k in PARAM_NAMES:
            p = model.params[k]
            p[...] = rng.uniform(-s, s, size=p.shape)
    return model


def make_case(rng, T, B, D, H, O, *, tokens=False, output="softmax", per_step=True,
              lengths=False, h0=False, dtype="float64", x_scale=1.0):
    """Random inputs for one call: a dict with x, target, h0, lengths (None when unused).

    Padding positions hold ordinary random values, so a test only passes if
    they are really ignored.
    """
    dt = np.dtype(dtype)
    if tokens:
        x = rng.integers(0, D, size=(T, B)).astype(np.int64)
    else:
        x = (x_scale * rng.standard_normal((T, B, D))).astype(dt)
    if output == "softmax":
        target = rng.integers(0, O, size=(T, B) if per_step else (B,)).astype(np.int64)
    else:
        target = rng.standard_normal((T, B, O) if per_step else (B, O)).astype(dt)
    lens = None
    if lengths:
        lens = rng.integers(1, T + 1, size=B).astype(np.int64)
        if B >= 2 and T >= 2:
            # Ragged for sure, and not sorted: one full and one length-1 sequence.
            i, j = rng.choice(B, size=2, replace=False)
            lens[i], lens[j] = 1, T
    h = (0.5 * rng.standard_normal((B, H))).astype(dt) if h0 else None
    return {"x": x, "target": target, "h0": h, "lengths": lens}


def subprocess_env(*paths):
    """os.environ for a child Python that imports the crnn under test (installed or
    from a source tree), with ``paths`` first on its PYTHONPATH too."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(crnn.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, *paths, env.get("PYTHONPATH")]))
    return env


@pytest.fixture
def text_file(tmp_path):
    """A tiny UTF-8 text for the ``crnn`` command (tests/test_cli*.py)."""
    from test_cli import TEXT
    path = tmp_path / "tiny.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture
def trained(tmp_path, text_file, capsys):
    """A model trained by the command on the tiny text: its path."""
    from crnn import cli
    from test_cli import TINY
    out = tmp_path / "tiny.npz"
    assert cli.main(["train", str(text_file), *TINY, "--out", str(out)]) == 0
    capsys.readouterr()
    return out


def peak_bytes(fn, *args, **kwargs):
    """The peak of memory traced (numpy's arrays included) while fn(*args, **kwargs) runs."""
    import tracemalloc
    tracemalloc.start()
    try:
        fn(*args, **kwargs)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def snapshot(params):
    """Deep copies of the params (to check bitwise that nothing changed)."""
    return {k: np.array(v, copy=True) for k, v in params.items()}


def assert_params_bitwise_equal(params, before):
    assert set(params) == set(before)
    for k in before:
        assert params[k].dtype == before[k].dtype, k
        assert params[k].shape == before[k].shape, k
        assert params[k].tobytes() == before[k].tobytes(), f"{k} changed"


def tol(dtype):
    """(rtol, atol) for comparing crnn with the float64 reference."""
    return (1e-10, 1e-12) if np.dtype(dtype) == np.float64 else (1e-4, 1e-5)


# The oracle tests (test_oracle.py) record their worst relative error here; the
# terminal summary reports it, for the record.
_ORACLE_WORST = []


def record_oracle_error(err):
    _ORACLE_WORST.append(float(err))


def pytest_terminal_summary(terminalreporter):
    if _ORACLE_WORST:
        terminalreporter.write_line(
            f"oracle: worst relative error against PyTorch {max(_ORACLE_WORST):.2e} "
            f"over {len(_ORACLE_WORST)} configurations")
