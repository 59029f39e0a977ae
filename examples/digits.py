"""Classify handwritten digits by reading each 8×8 image row by row.

Each of scikit-learn's bundled 8×8 digit images (1,797 of them, no
download) becomes a sequence of 8 time steps with 8 features — one pixel row
per step — and the network gives one class per sequence, scored after the
last row: target shape (N,). Prints the test accuracy (about 97.5%) and saves
``digits.png``: the learning curves and some test digits with their
predicted class.

Run: ``python examples/digits.py`` (needs scikit-learn and matplotlib).
"""

import time

import matplotlib

matplotlib.use("Agg")       # files only: no display needed
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import crnn


def as_sequences(images):
    """(N, 8, 8) images with values 0..16 → (T=8, N, D=8) floats in [0, 1], time-major."""
    return np.ascontiguousarray(images.transpose(1, 0, 2), dtype=np.float32) / 16.0


def main(hidden=64, epochs=50, lr=3e-3, plot="digits.png", seed=0):
    """Train, report the test accuracy, save the plot; return the test accuracy."""
    digits = load_digits()
    train_img, test_img, y_train, y_test = train_test_split(
        digits.images, digits.target, test_size=0.25, stratify=digits.target,
        random_state=seed)
    x_train, x_test = as_sequences(train_img), as_sequences(test_img)

    model = crnn.RNN(input_size=8, hidden_size=hidden, output_size=10, seed=seed)
    start = time.perf_counter()
    # The test set is evaluated after every epoch only to draw the curves: a
    # fixed number of epochs is trained, nothing is chosen by its score.
    history = model.fit(x_train, y_train, epochs=epochs, batch_size=32, optimizer="adam",
                        lr=lr, clip_norm=5.0, validation_data=(x_test, y_test), seed=seed,
                        verbose=0)
    seconds = time.perf_counter() - start

    # predict gives (T, N, 10) probabilities; a sequence's class is read at its last step.
    predicted = model.predict(x_test)[-1].argmax(-1)
    accuracy = float((predicted == y_test).mean())
    print(f"{len(y_train)} training and {len(y_test)} test digits; {epochs} epochs "
          f"in {seconds:.1f} s")
    print(f"test accuracy {accuracy:.3f}")

    fig = plt.figure(figsize=(10, 4.5))
    ax = fig.add_subplot(1, 2, 1)
    epochs_run = np.arange(1, len(history["loss"]) + 1)
    ax.plot(epochs_run, history["loss"], label="training loss")
    ax.plot(epochs_run, history["val_loss"], label="test loss")
    ax.plot(epochs_run, history["val_accuracy"], label="test accuracy")
    ax.set_xlabel("epoch")
    ax.set_title(f"RNN(8 → {hidden} → 10), test accuracy {accuracy:.1%}")
    ax.legend()
    # Misclassified digits first: they are the interesting ones.
    shown = np.concatenate([np.flatnonzero(predicted != y_test),
                            np.flatnonzero(predicted == y_test)])[:12]
    for k, i in enumerate(shown):
        sub = fig.add_subplot(3, 8, 8 * (k // 4) + 5 + k % 4)
        sub.imshow(test_img[i], cmap="gray_r")
        sub.set_title(f"{predicted[i]} ({y_test[i]})", fontsize=8,
                      color="red" if predicted[i] != y_test[i] else "black")
        sub.axis("off")
    fig.text(0.75, 0.02, "predicted (true); misclassified in red", ha="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(plot, dpi=100)
    plt.close(fig)
    print(f"saved {plot}")
    return accuracy


if __name__ == "__main__":
    main()
