"""A character-level language model in a page: what ``crnn train`` does, by hand.

Reads a text (a file given on the command line, or by default the English
documentation that ships with CPython, ``pydoc_data.topics``), turns its
characters into token ids and trains an Elman RNN to predict each next
character, with Adam, gradient clipping and stateful truncated BPTT:

- the text is cut into ``batch`` equal parts read side by side, so a batch
  is ``batch`` streams of consecutive characters;
- each step trains on the next ``seq_len`` characters of every stream,
  starting from the hidden state the previous window ended with, so the
  model sees context longer than one window while backpropagation stops at
  the window's edge.

Prints the loss in nats per character and a sample every few hundred steps,
and saves ``char_rnn.png``, the loss curve.

Run: ``python examples/char_rnn.py [TEXT_FILE]`` (needs matplotlib).
"""

import sys
import time

import matplotlib

matplotlib.use("Agg")       # files only: no display needed
import matplotlib.pyplot as plt
import numpy as np

import crnn


def read_text(path=None):
    """The text of ``path``, or CPython's bundled documentation."""
    if path is not None:
        with open(path, encoding="utf-8") as f:
            return f.read()
    from pydoc_data.topics import topics
    return "\n".join(topics[name] for name in sorted(topics))


def sample(model, vocab, length, seed, temperature=0.8):
    """``length`` characters generated after a newline."""
    ids = model.generate(length, prime=[vocab.index("\n")], temperature=temperature, seed=seed)
    return "".join(vocab[i] for i in ids)


def main(path=None, steps=1000, hidden=256, seq_len=64, batch=32, lr=5e-3, clip=5.0,
         sample_every=250, plot="char_rnn.png", seed=0):
    """Train, print progress and samples, save the plot; return the final loss."""
    text = read_text(path) + "\n"       # guarantees the newline used as the prime
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    ids = np.fromiter((index[c] for c in text), dtype=np.intp, count=len(text))

    # Stream b is the b-th of `batch` equal parts of the text; time-major
    # (length + 1, batch), so that each window is a contiguous slice.
    length = (len(ids) - 1) // batch
    streams = ids[np.arange(length + 1)[:, None] + length * np.arange(batch)[None, :]]
    windows = length // seq_len

    model = crnn.RNN(len(vocab), hidden, len(vocab), seed=seed)
    optimizer = crnn.Adam(model.params, lr=lr)
    print(f"{len(text):,} characters, {len(vocab)} distinct; {model}")
    losses = []
    h = None
    start = time.perf_counter()
    for step in range(steps):
        k = step % windows
        lo = k * seq_len
        x, target = streams[lo:lo + seq_len], streams[lo + 1:lo + seq_len + 1]   # (T, B)
        # Carry the state across windows; restart from zeros when the streams wrap.
        loss, grads, h = model.loss_and_grad(x, target, h0=None if k == 0 else h)
        crnn.clip_grad_norm(grads, clip)
        optimizer.step(grads)
        losses.append(loss)
        if (step + 1) % 100 == 0:
            print(f"step {step + 1}: loss {np.mean(losses[-100:]):.3f} nats/char, "
                  f"{(step + 1) / (time.perf_counter() - start):.1f} steps/s", flush=True)
        if (step + 1) % sample_every == 0:
            print(f"--- sample ---\n{sample(model, vocab, 200, seed + step)}\n---", flush=True)

    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(np.arange(1, steps + 1), losses, lw=0.5, alpha=0.4, label="per step")
    width = min(25, steps)
    smooth = np.convolve(losses, np.ones(width) / width, mode="valid")
    ax.plot(np.arange(width, steps + 1), smooth, label=f"mean of {width} steps")
    ax.axhline(np.log(len(vocab)), color="gray", ls=":", label="uniform guess")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per character)")
    ax.set_title(f"character-level RNN, H = {hidden}, Adam lr {lr:g}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(plot, dpi=100)
    plt.close(fig)
    final = float(np.mean(losses[-100:]))
    print(f"final loss {final:.3f} nats/char; saved {plot}")
    return final


if __name__ == "__main__":
    main(*sys.argv[1:2])
