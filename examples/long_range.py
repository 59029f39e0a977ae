"""Why gated cells exist: the LSTM and the GRU bridge 100 steps, an Elman RNN does not.

The adding problem (Hochreiter & Schmidhuber, 1997): at each of T = 100
steps the input is a value drawn from U(0, 1) and a marker, 1 at exactly two
steps (one in each half of the sequence), 0 elsewhere; the target, read
after the last step, is the sum of the two marked values. Predicting its
mean, 1, scores MSE 1/6; to do better a network must carry a value from up
to 99 steps back, past every other input.

An Elman RNN's gradient through that many steps is a product of 99 Jacobians
W_hᵀ·diag(1 − h²) and vanishes: it never learns more than the mean. The GRU's
update gate and the LSTM's cell state carry the value across unchanged
while the gates are closed. The LSTM starts from "chrono" gate biases
(Tallec & Ollivier, 2018: forget bias log U(1, T − 1), input bias its
negative), which give it memories of up to T steps from the start; with
PyTorch's default initialisation it takes many more epochs to leave the
plateau. The same size (H = 32), data, optimizer and budget for all three.

Prints each cell's validation MSE per epoch and saves ``long_range.png``,
the three learning curves.

Run: ``python examples/long_range.py`` (needs matplotlib; about 10 s).
"""

import time

import matplotlib

matplotlib.use("Agg")       # files only: no display needed
import matplotlib.pyplot as plt
import numpy as np

import crnn


def adding(rng, n, steps):
    """Inputs (steps, n, 2): [value, marker]; targets (n, 1): the sum of the marked values."""
    values = rng.uniform(0, 1, (steps, n))
    markers = np.zeros((steps, n))
    first = rng.integers(0, steps // 2, n)
    second = rng.integers(steps // 2, steps, n)
    markers[first, np.arange(n)] = 1
    markers[second, np.arange(n)] = 1
    target = values[first, np.arange(n)] + values[second, np.arange(n)]
    return np.stack([values, markers], axis=-1), target[:, None]


def chrono_init(model, steps, rng):
    """LSTM gate biases for memories of up to ``steps`` steps (gate order i, f, g, o)."""
    H = model.hidden_size
    forget = np.log(rng.uniform(1, steps - 1, H))
    model.params["b_h"][H:2 * H] = forget
    model.params["b_h"][:H] = -forget


def main(steps=100, hidden=32, n_train=4000, epochs=8, plot="long_range.png", seed=0):
    """Train the three cells; return {cell: validation MSE per epoch}."""
    rng = np.random.default_rng(seed)
    x, y = adding(rng, n_train, steps)
    x_val, y_val = adding(rng, 500, steps)
    print(f"the adding problem, T = {steps}: {n_train} training sequences; "
          f"predicting the mean scores MSE {np.mean((y_val - 1) ** 2):.3f}")
    curves = {}
    for name, cls in (("Elman RNN", crnn.RNN), ("LSTM", crnn.LSTM), ("GRU", crnn.GRU)):
        model = cls(2, hidden, 1, output="linear", seed=seed)
        if cls is crnn.LSTM:
            chrono_init(model, steps, np.random.default_rng(seed))
        start = time.perf_counter()
        history = model.fit(x, y, epochs=epochs, batch_size=32, optimizer="adam", lr=1e-2,
                            clip_norm=1.0, validation_data=(x_val, y_val), seed=seed,
                            verbose=0)
        curves[name] = [2 * v for v in history["val_loss"]]     # the loss is ½‖z − ŷ‖²
        print(f"{name:>10}: validation MSE by epoch "
              + " ".join(f"{v:.3f}" for v in curves[name])
              + f"  ({time.perf_counter() - start:.1f} s)")

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, mse in curves.items():
        ax.plot(range(1, len(mse) + 1), mse, marker="o", label=name)
    ax.axhline(1 / 6, color="grey", linestyle=":", label="predicting the mean (1/6)")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation MSE")
    ax.set_title(f"The adding problem, T = {steps}: H = {hidden}, Adam, the same budget")
    ax.legend()
    fig.tight_layout()
    fig.savefig(plot, dpi=120)
    print(f"saved {plot}")
    return curves


if __name__ == "__main__":
    main()
