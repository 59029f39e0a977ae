"""Generation throughput: tokens per second of sampling from a character-level model,
in crnn, PyTorch and JAX, one sequence (B = 1), token by token.

Each library samples ``--tokens`` ids from the same network (Elman RNN, LSTM
or GRU with a softmax head over O = D = 65 characters, H from ``--hidden``),
each step feeding the last sampled id back:

- crnn: ``model.generate(n, temperature=1.0, seed=...)`` (and ``step`` in a
  Python loop, the streaming API);
- PyTorch: the module on a (1, 1, D) one-hot step, ``nn.Linear``, softmax,
  ``torch.multinomial``, under ``torch.inference_mode()`` — the usual loop;
- JAX: the whole generation as one ``jax.jit`` of a ``lax.scan`` with
  ``jax.random.categorical`` (what a JAX user writes to keep Python out).

Each library runs in a process of its own, alternating over ``--rounds``;
medians of the rounds are reported, and tokens/s against crnn's generate.

Example (setting (b))::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=src \\
        python benchmarks/generate.py --cell lstm --hidden 100 512
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

D = 65      # characters in and out


def _weights(cell, H, seed=0):
    G = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    rng = np.random.default_rng(seed)
    k = 1 / np.sqrt(H)
    p = {"W_x": rng.uniform(-k, k, (G * H, D)), "W_h": rng.uniform(-k, k, (G * H, H)),
         "b_h": rng.uniform(-k, k, G * H), "W_y": rng.uniform(-k, k, (D, H)),
         "b_y": rng.uniform(-k, k, D)}
    if cell == "gru":
        p["b_x"] = rng.uniform(-k, k, G * H)
    return {k: v.astype(np.float32) for k, v in p.items()}


def run_crnn(cell, H, n, api):
    import crnn
    cls = {"rnn": crnn.RNN, "lstm": crnn.LSTM, "gru": crnn.GRU}[cell]
    model = cls(D, H, D, seed=0)
    for k, v in _weights(cell, H).items():
        model.params[k][...] = v
    if api == "generate":
        model.generate(50, seed=1)
        t = time.perf_counter()
        ids = model.generate(n, seed=1)
        return time.perf_counter() - t, len(ids)
    rng = np.random.default_rng(1)
    token, h = np.array([0]), None
    t = time.perf_counter()
    for _ in range(n):
        y, h = model.step(token, h)
        p = y[0].astype(np.float64)
        token = np.array([rng.choice(D, p=p / p.sum())])   # float64 sum: choice is strict
    return time.perf_counter() - t, n


def run_torch(cell, H, n):
    import torch
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
    rnn, head = cls(D, H), torch.nn.Linear(H, D)
    w = _weights(cell, H)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.from_numpy(w["W_x"]))
        rnn.weight_hh_l0.copy_(torch.from_numpy(w["W_h"]))
        rnn.bias_ih_l0.copy_(torch.from_numpy(w["b_x"] if cell == "gru" else w["b_h"]))
        rnn.bias_hh_l0.copy_(torch.from_numpy(w["b_h"]) if cell == "gru" else
                             torch.zeros_like(rnn.bias_hh_l0))
        head.weight.copy_(torch.from_numpy(w["W_y"]))
        head.bias.copy_(torch.from_numpy(w["b_y"]))
    gen = torch.Generator().manual_seed(1)
    eye = torch.eye(D)

    def sample(count):
        token, h = 0, None
        out = []
        with torch.inference_mode():
            for _ in range(count):
                y, h = rnn(eye[token].view(1, 1, D), h)
                p = torch.softmax(head(y[0, 0]), -1)
                token = int(torch.multinomial(p, 1, generator=gen))
                out.append(token)
        return out

    sample(50)
    t = time.perf_counter()
    ids = sample(n)
    return time.perf_counter() - t, len(ids)


def run_jax(cell, H, n):
    import jax
    import jax.numpy as jnp
    w = {k: jnp.asarray(v) for k, v in _weights(cell, H).items()}

    def cell_step(h, x_proj):
        if cell == "rnn":
            return jnp.tanh(x_proj + w["W_h"] @ h[0] + w["b_h"]), None
        if cell == "lstm":
            hh, c = h
            z = x_proj + w["W_h"] @ hh + w["b_h"]
            i, f, g, o = jnp.split(z, 4)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            return jax.nn.sigmoid(o) * jnp.tanh(c), c
        hh = h[0]
        xr, xz, xn = jnp.split(x_proj + w["b_x"], 3)
        hr, hz, hn = jnp.split(w["W_h"] @ hh + w["b_h"], 3)
        r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
        return (1 - z) * jnp.tanh(xn + r * hn) + z * hh, None

    @jax.jit
    def generate(key):
        def body(carry, key_t):
            h, c, token = carry
            hh, cc = cell_step((h, c), w["W_x"][:, token])     # one-hot input: a column
            logits = w["W_y"] @ hh + w["b_y"]
            token = jax.random.categorical(key_t, logits)
            return (hh, c if cc is None else cc, token), token
        zeros = jnp.zeros(H, jnp.float32)
        _, ids = jax.lax.scan(body, (zeros, zeros, jnp.int32(0)), jax.random.split(key, n))
        return ids

    key = jax.random.PRNGKey(1)
    generate(key).block_until_ready()       # compiled for this n
    t = time.perf_counter()
    ids = generate(key).block_until_ready()
    return time.perf_counter() - t, len(ids)


def worker(lib, cell, H, n):
    if lib == "crnn":
        seconds, count = run_crnn(cell, H, n, "generate")
    elif lib == "crnn_step":
        seconds, count = run_crnn(cell, H, n, "step")
    elif lib == "torch":
        seconds, count = run_torch(cell, H, n)
    else:
        seconds, count = run_jax(cell, H, n)
    print(json.dumps({"tokens_per_s": count / seconds}))


def _available(lib):
    module = {"torch": "torch", "jax": "jax"}.get(lib)
    if module is None:
        return True
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cell", choices=("rnn", "lstm", "gru"), default="lstm")
    p.add_argument("--hidden", type=int, nargs="+", default=[100, 512])
    p.add_argument("--tokens", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--worker", nargs=4, metavar=("LIB", "CELL", "H", "N"))
    p.add_argument("--json")
    args = p.parse_args(argv)
    if args.worker:
        lib, cell, H, n = args.worker
        return worker(lib, cell, int(H), int(n))
    libs = [lib for lib in ("crnn", "crnn_step", "torch", "jax") if _available(lib)]
    print(f"# {args.cell.upper()} generation, B = 1, D = O = {D}, float32, {args.tokens} tokens; "
          f"tokens/s, median of {args.rounds} processes each; OPENBLAS_CORETYPE="
          f"{os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    print(f"{'H':>6} " + " ".join(f"{lib:>12}" for lib in libs) + "   crnn/torch  crnn/jax")
    results = {}
    for H in args.hidden:
        got = {lib: [] for lib in libs}
        for _ in range(args.rounds):
            for lib in libs:
                out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", lib,
                                      args.cell, str(H), str(args.tokens)],
                                     capture_output=True, text=True)
                if out.returncode:
                    sys.exit(f"{lib} failed:\n{out.stderr}")
                got[lib].append(json.loads(out.stdout.strip().splitlines()[-1])["tokens_per_s"])
        med = {lib: float(np.median(v)) for lib, v in got.items()}
        ratios = [f"{med['crnn'] / med[b]:10.2f}×" if b in med else f"{'-':>11}"
                  for b in ("torch", "jax")]
        print(f"{H:>6} " + " ".join(f"{med[lib]:12,.0f}" for lib in libs) + "  " +
              "  ".join(ratios))
        results[H] = med
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cell": args.cell, "tokens": args.tokens, "results": results}, f,
                      indent=1)


if __name__ == "__main__":
    main()
