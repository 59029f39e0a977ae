"""Run under ``mpiexec -n 2`` by tests/test_mpi.py: data-parallel fits and failures.

    python tests/_mpi_worker.py MODE OUT

Every rank builds the same data (from fixed seeds) and keeps its own shard;
rank 0 writes what the test compares into OUT (an .npz file).
"""

import sys

import numpy as np

import crnn

# Set under mpiexec (tests/test_mpi.py imports the configurations without MPI).
comm, rank = None, 0
CLASSES = {"rnn": crnn.RNN, "lstm": crnn.LSTM, "gru": crnn.GRU}

# name: (cell, options of the model, options of fit, per_step, lengths, local sequences)
CONFIGS = {
    "rnn-sgd": ("rnn", {}, {"optimizer": "sgd", "lr": 0.1}, False, True, (8, 8)),
    "rnn-bptt-adam": ("rnn", {"nonlinearity": "relu"},
                      {"optimizer": "adam", "lr": 0.02, "bptt": 3, "clip_norm": 0.5},
                      True, True, (8, 8)),
    "lstm-momentum-bptt": ("lstm", {"num_layers": 2},
                           {"optimizer": "momentum", "lr": 0.05, "bptt": 4}, False, True,
                           (8, 8)),
    "lstm-bi-rmsprop": ("lstm", {"bidirectional": True},
                        {"optimizer": "rmsprop", "lr": 0.01, "clip_value": 0.1}, True, True,
                        (8, 8)),
    "gru-adagrad": ("gru", {"num_layers": 2, "bidirectional": True},
                    {"optimizer": "adagrad", "lr": 0.05}, False, True, (8, 8)),
    "gru-linear-adam": ("gru", {"output": "linear"}, {"optimizer": "adam", "lr": 0.01},
                        True, False, (8, 8)),
    # Uneven shards: rank 0 has three mini-batches of 4, rank 1 two.
    "rnn-uneven": ("rnn", {}, {"optimizer": "adam", "lr": 0.02}, False, True, (12, 8)),
}
T, D, H, O, BATCH = 7, 3, 5, 3, 4


def data(name):
    """The whole data set of a configuration, the same on every rank: x, target,
    lengths, and the rows of each rank's shard."""
    cell, kw, fit_kw, per_step, ragged, shards = CONFIGS[name]
    rng = np.random.default_rng([7, len(name)] + [ord(c) for c in name])
    N = sum(shards)
    x = rng.standard_normal((T, N, D))
    if kw.get("output") == "linear":
        target = rng.standard_normal((T, N, O) if per_step else (N, O))
    else:
        target = rng.integers(O, size=(T, N) if per_step else N)
    lengths = rng.integers(1, T + 1, size=N) if ragged else None
    rows = np.split(np.arange(N), np.cumsum(shards)[:-1])
    return x, target, lengths, rows


def model(name):
    cell, kw, *_ = CONFIGS[name]
    return CLASSES[cell](D, H, O, dtype="float64", seed=3, **kw)


def shard(arr, rows, axis):
    return None if arr is None else np.take(arr, rows, axis=axis)


def fit_all(out):
    results = {}
    for name, (cell, kw, fit_kw, per_step, ragged, shards) in CONFIGS.items():
        x, target, lengths, rows = data(name)
        mine = rows[rank]
        m = model(name)
        val = (shard(x, mine[:3], 1), shard(target, mine[:3], 1 if per_step else 0))
        history = m.fit(shard(x, mine, 1), shard(target, mine, 1 if per_step else 0),
                        lengths=shard(lengths, mine, 0), epochs=3, batch_size=BATCH,
                        shuffle=False, verbose=0, validation_data=val, comm=comm, **fit_kw)
        for k, v in m.params.items():
            results[f"{name}/{k}"] = v
        for k, v in history.items():
            results[f"{name}/history/{k}"] = np.array(v)
    if rank == 0:
        np.savez(out, **results)


class Record(crnn.callbacks.Callback):
    def on_train_begin(self, model):
        self.threads = crnn.get_num_threads()


def threads(out):
    x, target, lengths, rows = data("rnn-sgd")
    cb = Record()
    model("rnn-sgd").fit(x[:, rows[rank]], target[rows[rank]], verbose=0, callbacks=[cb],
                         comm=comm)
    seen = comm.gather(cb.threads)
    if rank == 0:
        np.savez(out, during=np.array(seen), after=crnn.get_num_threads())


class RaiseOn1(crnn.callbacks.Callback):
    def on_epoch_end(self, model, epoch, history):
        if rank == 1 and epoch == 1:
            raise RuntimeError("a callback failed on rank 1 only")


class ChangeOn1(crnn.callbacks.Callback):
    def on_epoch_end(self, model, epoch, history):
        if rank == 1 and epoch == 0:
            model.params["W_h"][0, 0] += 1.0


def failing(mode):
    x, target, lengths, rows = data("rnn-sgd")
    x = x[:, rows[rank]].copy()
    target = target[rows[rank]]
    callbacks = []
    if mode == "bad-input" and rank == 1:
        x[2, 1, 0] = np.nan
    if mode == "memory" and rank == 1:     # not an error the ranks can agree on

        class Huge:
            def __array__(self, *args, **kwargs):
                raise MemoryError("cannot allocate the data")
        x = Huge()
    if mode == "stop-on-1":         # a callback stops rank 1: every rank stops with it
        seen = []

        class StopOn1(crnn.callbacks.Callback):
            def on_epoch_end(self, model, epoch, history):
                seen.append(epoch)
                return rank == 1 and epoch == 1
        model("rnn-sgd").fit(x, target, epochs=5, verbose=0, callbacks=[StopOn1()], comm=comm)
        assert seen == [0, 1], seen
        return
    if mode == "non-finite":        # a linear head whose loss overflows on rank 1 only
        m = crnn.RNN(D, H, O, output="linear", dtype="float64", seed=3)
        values = np.full((x.shape[1], O), 1e200 if rank == 1 else 0.5)
        m.fit(x, values, epochs=2, verbose=0, comm=comm)
    if mode == "raise":
        callbacks = [RaiseOn1()]
    if mode == "diverge":
        callbacks = [ChangeOn1()]
    model("rnn-sgd").fit(x, target, epochs=5, verbose=0, callbacks=callbacks, comm=comm)


if __name__ == "__main__":
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    mode, out = sys.argv[1], sys.argv[2]
    if mode == "fit":
        fit_all(out)
    elif mode == "threads":
        threads(out)
    else:
        failing(mode)
