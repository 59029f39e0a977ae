"""Data-parallel training over MPI (mpi4py): every rank holds its own shard of the
data and the same model; each step sums the ranks' gradients with one Allreduce.

A step, on every rank::

    g_r, L_r, n_r = ∂(Σ loss)/∂W, Σ loss, items scored      over the local batch
    [g, L, n] = Allreduce(Σ_r [g_r, L_r, n_r])             one flat buffer
    g, L = g / n, L / n      ("mean": the mean over the global batch)
    clip and update, identically on every rank

so that the model stays the same on every rank; a checksum compared at the
end of each epoch proves it. Ranks may hold different numbers of sequences
or steps: every rank takes part in as many steps as the busiest one, adding
nothing (n_r = 0) when it has no data left.

Failures: what every rank sees alike (a non-finite reduced gradient, bad
input found while the ranks agree on their data, diverging checksums) is
raised on every rank with the failing rank's message. Anything else raised
on one rank alone would leave the others waiting in an Allreduce forever: it
is printed with the rank and the job is aborted (``comm.Abort``).

mpi4py is imported only here, and only when a communicator is given.
"""

import os
import sys
import time
import zlib

import numpy as np

from crnn import _data, _threads

_ABORT_GRACE = 1.0     # seconds between the message of a failed rank and the abort


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError:     # pragma: no cover - the caller passed a communicator
        raise ImportError("comm: data-parallel training needs mpi4py "
                          "(pip install 'crnn[mpi]')") from None
    return MPI


def _collective(exc):
    """Mark ``exc`` as raised on every rank alike (no need to abort the job)."""
    exc._collective = True
    return exc


class Ranks:
    """One communicator's ranks, for fit and ``crnn train --distributed``."""

    def __init__(self, comm):
        MPI = _mpi()
        if not isinstance(comm, MPI.Comm) or not comm.Is_intra():
            raise TypeError(f"comm: expected an mpi4py intra-communicator such as "
                            f"MPI.COMM_WORLD, got {type(comm).__name__}")
        self.MPI = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self._buf = None

    # -- agreeing -------------------------------------------------------------------------

    def agree(self, error, kinds=(ValueError, TypeError, FloatingPointError)):
        """Collective: raise on every rank if ``error`` (an exception or None) is set on
        any; the first failing rank's message, naming it, is what every rank raises
        (as the same class when it is one of ``kinds``, else RuntimeError)."""
        failed = self.comm.allgather(None if error is None else
                                     (type(error).__name__, str(error)))
        for rank, what in enumerate(failed):
            if what is None:
                continue
            name, message = what
            cls = {k.__name__: k for k in kinds}.get(name, RuntimeError)
            exc = _collective(cls(f"rank {rank}: {message}" if self.size > 1 else message))
            raise exc from (error if rank == self.rank else None)

    def max(self, value):
        return self.comm.allreduce(value, op=self.MPI.MAX)

    def max_each(self, values):
        """The elementwise maximum over ranks of int64 vectors of any lengths (the
        shorter ones padded with zeros)."""
        n = self.max(len(values))
        out = np.zeros(n, dtype=np.int64)
        out[:len(values)] = values
        self.comm.Allreduce(self.MPI.IN_PLACE, out, op=self.MPI.MAX)
        return out

    def broadcast(self, model, optimizer):
        """Rank 0's parameters and optimizer state, on every rank."""
        self.comm.Bcast(model._flat, root=0)
        state = self.comm.bcast(optimizer.state_dict() if self.rank == 0 else None, root=0)
        if self.rank != 0:
            optimizer.load_state_dict(state)

    def check_same(self, model, epoch):
        """Raise on every rank when the parameters differ between ranks."""
        crc = zlib.crc32(model._flat.tobytes())
        crcs = self.comm.allgather(crc)
        if len(set(crcs)) > 1:
            raise _collective(RuntimeError(
                f"fit: the model differs between ranks after epoch {epoch + 1} (checksums "
                f"{[f'{c:08x}' for c in crcs]}); something changed the parameters on some "
                f"ranks only"))

    # -- a step ---------------------------------------------------------------------------

    @staticmethod
    def step_buffer(model):
        """The buffer of :meth:`reduce`: the flat gradients and three more entries."""
        return np.zeros(model._engine.size + 3, dtype=model.dtype)

    def reduce(self, buf, loss, count, stop=0):
        """One Allreduce of ``buf`` = [this rank's summed gradients, loss, count, stop];
        then the gradients (in place) and the loss are the means over every rank's
        items. Returns (mean loss, items, Σ stop codes); with no items anywhere the
        gradients stay the sums (zeros)."""
        buf[-3:] = loss, count, stop
        self.comm.Allreduce(self.MPI.IN_PLACE, buf)
        loss, n, stop = float(buf[-3]), int(round(float(buf[-2]))), int(round(float(buf[-1])))
        if n:
            buf[:-3] /= n
            loss /= n
        return loss, n, stop

    def loss_and_grad(self, model, x, target, h0, stop=0):
        """``model.loss_and_grad(x, target, h0)`` over the rows of every rank together:
        the mean loss and gradients over the global batch, the same on every rank,
        this rank's final states, and the sum of every rank's ``stop`` code (a rank
        asking the others to stop after this step)."""
        data = _data.prepare(model, x, h0, None, finite=True, target=target)
        w = _data.window(model, data, None, 0, data.T, data.h0, data.c0)
        if self._buf is None or self._buf.size != model._engine.size + 3 or \
                self._buf.dtype != model.dtype:
            self._buf = self.step_buffer(model)
        dW = self._buf[:-3]
        loss, _, h, c = model._run(model._sync(), w, None, False, dW=dW)
        loss, _, stop = self.reduce(self._buf, loss, w.count, stop)
        return loss, model._unflatten(dW), model._states_out(h, c, w.order), stop

    def name_nonfinite(self, local_loss, epoch):
        """Collective, after a non-finite summed loss: raise on every rank, naming the
        ranks whose own loss was not finite."""
        losses = self.comm.allgather(float(local_loss))
        bad = [r for r, v in enumerate(losses) if not np.isfinite(v)]
        where = (f"rank{'s' if len(bad) > 1 else ''} {', '.join(map(str, bad))}: "
                 if bad else "")
        raise _collective(FloatingPointError(
            f"{where}fit: non-finite loss in epoch {epoch + 1} (local losses {losses}); "
            f"parameters restored. Lower lr, set clip_norm, or check that rank's data."))

    def sums(self, values):
        """Σ over ranks of a few float64 values."""
        arr = np.asarray(values, dtype=np.float64).copy()
        self.comm.Allreduce(self.MPI.IN_PLACE, arr)
        return arr

    # -- failure ------------------------------------------------------------------------

    def abort(self, exc):
        """Print what failed on this rank and end the whole job (the other ranks may
        be waiting in a collective call that will never complete)."""
        print(f"crnn: rank {self.rank} of {self.size} failed: {type(exc).__name__}: {exc}; "
              f"aborting the job", file=sys.stderr, flush=True)
        # The launcher forwards this rank's output through a pipe, and an abort makes
        # it kill every rank and exit, possibly before the message has crossed (seen
        # with mpich's mpiexec: the job ended with nothing on stderr). A moment first.
        time.sleep(_ABORT_GRACE)
        self.comm.Abort(1)

    # -- threads -------------------------------------------------------------------------

    def node_threads(self):
        """CPUs of this process / ranks on this node (MPI's shared-memory split), >= 1."""
        node = self.comm.Split_type(self.MPI.COMM_TYPE_SHARED)
        try:
            per_node = node.Get_size()
        finally:
            node.Free()
        return max(1, _threads._cpu_count() // per_node)


class threads_for:
    """While training on ``ranks``, use this node's share of its cores (its CPUs / its
    ranks), unless the user chose a thread count (set_num_threads, CRNN_NUM_THREADS)."""

    def __init__(self, ranks):
        self.ranks = ranks
        self.before = None

    def __enter__(self):
        if self.ranks is None:
            return self
        share = self.ranks.node_threads()       # collective: every rank calls it
        if not _threads._chosen():
            self.before = _threads.get_num_threads()
            _threads._set(min(self.before, share))
        return self

    def __exit__(self, *exc):
        if self.before is not None:
            _threads._set(self.before)
        return False
