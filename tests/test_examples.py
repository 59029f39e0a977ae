"""The scripts in examples/ run end to end, at tiny sizes, and save their plots.

Each example has a ``main(...)`` whose keyword arguments set its sizes; here
they are made small enough for the whole file to take a few seconds. Skipped
when the optional dependencies (the ``examples`` extra) are missing, or when
the tests run without the repository's examples/ folder next to them.
"""

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
if not EXAMPLES.is_dir():
    pytest.skip("no examples/ folder next to tests/", allow_module_level=True)


def _load(name):
    """The example ``examples/<name>.py`` as a module (its main() is not run)."""
    spec = importlib.util.spec_from_file_location(f"crnn_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_char_rnn(tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("to be or not to be, that is the question.\n" * 30, encoding="utf-8")
    plot = tmp_path / "char_rnn.png"
    loss = _load("char_rnn").main(str(text), steps=30, hidden=16, seq_len=8, batch=4,
                                  sample_every=15, plot=str(plot))
    assert math.isfinite(loss) and loss < math.log(16)
    assert plot.stat().st_size > 0
    assert capsys.readouterr().out.count("--- sample ---") == 2


@pytest.mark.parametrize("statsmodels", [True, False], ids=["co2", "sine-fallback"])
def test_forecast(statsmodels, tmp_path, monkeypatch, capsys):
    if statsmodels:
        pytest.importorskip("statsmodels")
    else:
        # A None entry makes `import statsmodels...` raise ImportError.
        monkeypatch.setitem(sys.modules, "statsmodels", None)
        monkeypatch.setitem(sys.modules, "statsmodels.datasets", None)
    plot = tmp_path / "forecast.png"
    rmse, naive_rmse = _load("forecast").main(hidden=8, window=12, epochs=2, plot=str(plot))
    assert math.isfinite(rmse) and math.isfinite(naive_rmse) and naive_rmse > 0
    assert plot.stat().st_size > 0
    printed = capsys.readouterr().out
    assert ("CO2" in printed) == statsmodels
    assert "naive last value" in printed


def test_digits(tmp_path):
    pytest.importorskip("sklearn")
    plot = tmp_path / "digits.png"
    accuracy = _load("digits").main(hidden=16, epochs=2, plot=str(plot))
    assert 0.3 < accuracy <= 1.0       # chance is 0.1
    assert plot.stat().st_size > 0


def test_gradient_flow(tmp_path):
    plot = tmp_path / "gradient_flow.png"
    results = _load("gradient_flow").main(steps=6, n_train=64, epochs=2, plot=str(plot))
    assert set(results) == {("tanh", None), ("tanh", 1.0), ("relu", None), ("relu", 1.0)}
    for run in results.values():
        assert run["before"].shape == run["after"].shape == (6,)
        assert np.all(np.isfinite(run["before"]))
    # The textbook picture at initialisation: a tanh network's gradient shrinks
    # going back in time.
    before = results["tanh", None]["before"]
    assert before[0] < before[-1]
    assert plot.stat().st_size > 0


def test_long_range(tmp_path):
    plot = tmp_path / "long_range.png"
    curves = _load("long_range").main(steps=12, n_train=128, epochs=2, plot=str(plot))
    assert set(curves) == {"Elman RNN", "LSTM", "GRU"}
    assert all(len(c) == 2 and all(math.isfinite(v) for v in c) for c in curves.values())
    assert plot.stat().st_size > 0


def test_sklearn_pipeline(capsys):
    pytest.importorskip("sklearn")
    best, accuracy = _load("sklearn_pipeline").main(n=200, T=20, epochs=10, hidden_sizes=(4, 8),
                                                    lrs=(0.03,), cv=2)
    assert set(best) == {"hidden_size", "lr"} and best["hidden_size"] in (4, 8)
    assert 0.5 < accuracy <= 1.0       # chance is 1/3; about 0.75 at these sizes
    assert "best parameters" in capsys.readouterr().out
