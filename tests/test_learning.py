"""RNN.fit learns small sequence tasks, and its history, verbosity, seeding and lengths behave.

Accuracy is always measured on fresh data the model has not been trained on.
"""

import numpy as np
import pytest

import crnn

from conftest import PARAM_NAMES, assert_params_bitwise_equal, rng_for, snapshot

DTYPES = ["float32", "float64"]


def _echo(rng, T, N, V, k):
    """Token ids and, per step, the id from k steps back (class 0 for the first k steps)."""
    x = rng.integers(0, V, (T, N))
    y = np.zeros((T, N), dtype=np.int64)
    y[k:] = x[:-k]
    return x, y


@pytest.mark.parametrize("dtype", DTYPES)
def test_fit_learns_echo_two_steps_back(dtype):
    """Token ids in, the token from 2 steps earlier out, per step: >= 95% accuracy on new data."""
    rng = rng_for("echo", dtype)
    T, N, V, k = 10, 512, 4, 2
    x, y = _echo(rng, T, N, V, k)
    model = crnn.RNN(V, 32, V, dtype=dtype, seed=1)
    history = model.fit(x, y, epochs=30, batch_size=32, lr=0.5, clip_norm=5.0, seed=0,
                        verbose=0)
    assert history["loss"][-1] < 0.1 * history["loss"][0]
    xt, yt = _echo(rng, T, 1000, V, k)
    pred = model.predict(xt).argmax(-1)
    assert (pred[k:] == yt[k:]).mean() >= 0.95


def _running_parity(rng, T, N):
    x = rng.integers(0, 2, (T, N))
    lengths = rng.integers(2, T + 1, N)
    return x, np.cumsum(x, axis=0) % 2, lengths


@pytest.mark.parametrize("dtype", DTYPES)
def test_fit_with_lengths_learns_running_parity(dtype):
    """Bits in, the parity so far out, on ragged sequences (lengths): >= 95% accuracy on valid steps."""
    rng = rng_for("parity", dtype)
    T = 8
    x, y, lengths = _running_parity(rng, T, 512)
    model = crnn.RNN(2, 32, 2, dtype=dtype, seed=1)
    model.fit(x, y, lengths=lengths, epochs=60, batch_size=32, lr=1.0, clip_norm=5.0, seed=0,
              verbose=0)
    xt, yt, lt = _running_parity(rng, T, 1000)
    pred = model.predict(xt, lengths=lt).argmax(-1)
    valid = np.arange(T)[:, None] < lt[None, :]
    assert (pred == yt)[valid].mean() >= 0.95


def _first_token(rng, T, N, V):
    x = rng.integers(0, V, (T, N))
    lengths = rng.integers(1, T + 1, N)
    return x, x[0].copy(), lengths


@pytest.mark.parametrize("dtype", DTYPES)
def test_fit_per_sequence_target_learns_first_token(dtype):
    """One target per ragged sequence, scored at its last valid step: recall the first token, >= 95%."""
    rng = rng_for("first", dtype)
    T, V = 6, 3
    x, y, lengths = _first_token(rng, T, 512, V)
    model = crnn.RNN(V, 32, V, dtype=dtype, seed=11)
    model.fit(x, y, lengths=lengths, epochs=40, batch_size=32, lr=0.5, clip_norm=5.0, seed=1,
              verbose=0)
    xt, yt, lt = _first_token(rng, T, 1000, V)
    y_all = model.predict(xt, lengths=lt)
    pred = y_all[lt - 1, np.arange(1000)].argmax(-1)
    assert (pred == yt).mean() >= 0.95


@pytest.mark.parametrize("dtype", DTYPES)
def test_fit_linear_head_regression(dtype):
    """The linear head learns to output the previous step's input vector (loss falls 10x)."""
    rng = rng_for("regress", dtype)
    T, N, D = 8, 256, 3
    x = rng.standard_normal((T, N, D)).astype(dtype)
    y = np.zeros_like(x)
    y[1:] = x[:-1]
    model = crnn.RNN(D, 24, D, output="linear", dtype=dtype, seed=2)
    history = model.fit(x, y, epochs=40, batch_size=32, lr=0.1, clip_norm=5.0, seed=0,
                        verbose=0)
    assert history["loss"][-1] < 0.1 * history["loss"][0]


# --- history, verbosity, seeding, lengths ----------------------------------------------------

def _small_task(dtype="float64"):
    rng = rng_for("small", dtype)
    x, y = _echo(rng, 6, 40, 3, 1)
    return x, y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("epochs", [1, 3, 7])
def test_fit_history_has_one_loss_per_epoch(epochs, dtype):
    """history["loss"] is a list of `epochs` finite floats, and training lowers it."""
    x, y = _small_task(dtype)
    model = crnn.RNN(3, 8, 3, dtype=dtype, seed=0)
    history = model.fit(x, y, epochs=epochs, batch_size=8, lr=0.5, seed=0, verbose=0)
    assert isinstance(history, dict)
    losses = history["loss"]
    assert isinstance(losses, list) and len(losses) == epochs
    assert all(isinstance(v, float) and np.isfinite(v) for v in losses)
    if epochs > 1:
        assert losses[-1] < losses[0]


def test_fit_verbose_0_prints_nothing(capsys):
    """verbose=0 writes nothing to stdout or stderr."""
    x, y = _small_task()
    crnn.RNN(3, 8, 3, seed=0).fit(x, y, epochs=3, batch_size=8, verbose=0)
    out, err = capsys.readouterr()
    assert out == "" and err == ""


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shuffle", [True, False])
def test_fit_is_reproducible_with_a_seed(shuffle, dtype):
    """The same model seed and fit seed give bitwise the same params and history."""
    x, y = _small_task(dtype)
    runs = []
    for _ in range(2):
        model = crnn.RNN(3, 8, 3, dtype=dtype, seed=3)
        history = model.fit(x, y, epochs=3, batch_size=8, lr=0.3, shuffle=shuffle, seed=42,
                            verbose=0)
        runs.append((model, history))
    (a, ha), (b, hb) = runs
    assert ha["loss"] == hb["loss"]
    for k in PARAM_NAMES:
        assert a.params[k].tobytes() == b.params[k].tobytes(), k


def test_fit_seed_changes_the_shuffle():
    """With shuffle=True, a different fit seed gives different params (the seed is really used)."""
    x, y = _small_task()
    params = []
    for seed in (1, 2):
        model = crnn.RNN(3, 8, 3, dtype="float64", seed=3)
        model.fit(x, y, epochs=2, batch_size=8, lr=0.3, shuffle=True, seed=seed, verbose=0)
        params.append(model.params)
    assert any(not np.array_equal(params[0][k], params[1][k]) for k in PARAM_NAMES)


@pytest.mark.parametrize("per_step", [True, False], ids=["per_step", "per_seq"])
def test_fit_ignores_padding(per_step):
    """With lengths, what lies in the padding (inputs and per-step targets) does not change training."""
    rng = rng_for("fit-padding", per_step)
    T, N, D, O = 7, 24, 3, 4
    lengths = rng.integers(1, T + 1, N)
    pad = np.arange(T)[:, None] >= lengths[None, :]
    x1 = rng.standard_normal((T, N, D))
    x2 = np.where(pad[..., None], 5 * rng.standard_normal((T, N, D)), x1)
    if per_step:
        t1 = rng.integers(0, O, (T, N))
        t2 = np.where(pad, rng.integers(0, O, (T, N)), t1)
    else:
        t1 = t2 = rng.integers(0, O, N)
    models = []
    for x, t in ((x1, t1), (x2, t2)):
        model = crnn.RNN(D, 6, O, dtype="float64", seed=5)
        model.fit(x, t, lengths=lengths, epochs=2, batch_size=5, lr=0.2, seed=0, verbose=0)
        models.append(model)
    for k in PARAM_NAMES:
        np.testing.assert_allclose(models[0].params[k], models[1].params[k], rtol=1e-12,
                                   atol=1e-14, err_msg=k)
    untrained = crnn.RNN(D, 6, O, dtype="float64", seed=5)
    assert any(not np.allclose(models[0].params[k], untrained.params[k]) for k in PARAM_NAMES)


@pytest.mark.parametrize("clip_norm", [None, 0.05])
@pytest.mark.parametrize("lengths", [False, True], ids=["no_lengths", "lengths"])
def test_fit_one_full_batch_is_one_sgd_step(lengths, clip_norm):
    """One epoch, one batch (batch_size > N), no shuffle = loss_and_grad (+ clip) + one SGD step.

    The reduction fit uses is not fixed by the contract; the result must be
    the step for "mean" (loss_and_grad's default) or for "sum".
    """
    rng = rng_for("one-step", lengths, clip_norm)
    T, N, D, O = 5, 12, 3, 4
    x = rng.standard_normal((T, N, D))
    t = rng.integers(0, O, (T, N))
    lens = rng.integers(1, T + 1, N) if lengths else None
    model = crnn.RNN(D, 6, O, dtype="float64", seed=8)
    start = snapshot(model.params)
    model.fit(x, t, lengths=lens, epochs=1, batch_size=4 * N, lr=0.3, clip_norm=clip_norm,
              shuffle=False, verbose=0)
    candidates = []
    for reduction in ("mean", "sum"):
        manual = crnn.RNN(D, 6, O, dtype="float64", seed=8)
        assert_params_bitwise_equal(manual.params, start)
        _, grads, _ = manual.loss_and_grad(x, t, lengths=lens, reduction=reduction)
        if clip_norm is not None:
            crnn.clip_grad_norm(grads, clip_norm)
        crnn.SGD(manual.params, 0.3).step(grads)
        candidates.append(all(np.allclose(model.params[k], manual.params[k], rtol=1e-12,
                                          atol=1e-14) for k in PARAM_NAMES))
    assert any(candidates)


# --- every cell, both directions, and why gated cells exist ------------------------------------

CELLS = {"rnn": crnn.RNN, "lstm": crnn.LSTM, "gru": crnn.GRU}


def _ahead(rng, T, N, V):
    """Token ids and, per step, the id of the *next* step (class 0 at the last)."""
    x = rng.integers(0, V, (T, N))
    y = np.zeros((T, N), dtype=np.int64)
    y[:-1] = x[1:]
    return x, y


@pytest.mark.parametrize("cell", list(CELLS))
def test_every_cell_learns_echo_two_steps_back_stacked(cell):
    """Two layers of each cell learn to echo the token from 2 steps back: >= 95% on new data."""
    rng = rng_for("cell-echo", cell)
    x, y = _echo(rng, 10, 512, 4, 2)
    model = CELLS[cell](4, 32, 4, num_layers=2, seed=1)
    model.fit(x, y, epochs=20, batch_size=32, optimizer="adam", lr=1e-2, clip_norm=5.0,
              seed=0, verbose=0)
    xt, yt = _echo(rng, 10, 1000, 4, 2)
    assert (model.predict(xt).argmax(-1)[2:] == yt[2:]).mean() >= 0.95


@pytest.mark.parametrize("cell", list(CELLS))
def test_only_a_bidirectional_model_can_read_ahead(cell):
    """The next step's token, at every step: a bidirectional model learns it (>= 95%), a
    one-direction model of the same size cannot do better than chance (1/4)."""
    rng = rng_for("cell-ahead", cell)
    x, y = _ahead(rng, 10, 512, 4)
    xt, yt = _ahead(rng, 10, 1000, 4)
    acc = {}
    for bi in (True, False):
        model = CELLS[cell](4, 32, 4, num_layers=2, bidirectional=bi, seed=1)
        model.fit(x, y, epochs=20, batch_size=32, optimizer="adam", lr=1e-2, clip_norm=5.0,
                  seed=0, verbose=0)
        acc[bi] = (model.predict(xt).argmax(-1)[:-1] == yt[:-1]).mean()
    assert acc[True] >= 0.95 and acc[False] < 0.35, acc


def _adding(rng, N, T):
    """The adding problem: [value ~ U(0, 1), marker] at each step, one marker in each half;
    the target is the sum of the two marked values. Predicting 1 scores MSE 1/6."""
    v = rng.uniform(0, 1, (T, N))
    m = np.zeros((T, N))
    a, b = rng.integers(0, T // 2, N), rng.integers(T // 2, T, N)
    m[a, np.arange(N)] = 1
    m[b, np.arange(N)] = 1
    return np.stack([v, m], -1), (v[a, np.arange(N)] + v[b, np.arange(N)])[:, None]


def chrono_init(model, T, rng):
    """An LSTM's gate biases for memories of up to T steps (Tallec & Ollivier, 2018):
    forget bias log U(1, T − 1) per unit, input bias its negative."""
    H = model.hidden_size
    bf = np.log(rng.uniform(1, T - 1, H))
    model.params["b_h"][H:2 * H] = bf
    model.params["b_h"][:H] = -bf


def test_gated_cells_solve_a_100_step_dependency_and_the_elman_rnn_does_not():
    """The adding problem with T = 100: the LSTM (chrono gate biases) and the GRU bring the
    validation MSE to under 0.02 in 6 epochs; an Elman RNN of the same size stays at the
    MSE of predicting the mean (about 1/6). The reason gated cells exist."""
    T = 100
    rng = np.random.default_rng(0)
    x, y = _adding(rng, 4000, T)
    xv, yv = _adding(rng, 500, T)
    mse = {}
    for cell in CELLS:
        model = CELLS[cell](2, 32, 1, output="linear", seed=0)
        if cell == "lstm":
            chrono_init(model, T, np.random.default_rng(0))
        hist = model.fit(x, y, epochs=6, batch_size=32, optimizer="adam", lr=1e-2,
                         clip_norm=1.0, validation_data=(xv, yv), seed=0, verbose=0)
        mse[cell] = 2 * hist["val_loss"][-1]        # the loss is ½‖z − ŷ‖²
    assert mse["lstm"] < 0.02 and mse["gru"] < 0.02, mse
    assert mse["rnn"] > 0.1, mse
