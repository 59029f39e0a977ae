"""The files of the ``crnn`` command: the training text read, the model checkpoints
written and read back (with their vocabulary), and the checks that keep a save
from destroying anything."""

import json
import os
import tempfile
import uuid

import numpy as np

from crnn import _corpus, _io
from crnn.model import GRU, LSTM, RNN


class Error(Exception):
    """A failure the user can fix: reported as one line, without a traceback."""


def read_text(path):
    """The training text and a description of where it came from."""
    if path is None:
        try:
            return _corpus.default_text(), f"{_corpus.DEFAULT_NAME} (CPython's documentation)"
        except ImportError:
            raise Error(f"this Python has no {_corpus.DEFAULT_NAME} for the default corpus; "
                         f"pass a TEXT_FILE") from None
    try:
        # utf-8-sig: a byte-order mark (some editors write one) is not a character
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except UnicodeDecodeError as exc:
        raise Error(f"TEXT_FILE: {path!r} is not UTF-8 text (byte "
                     f"{exc.object[exc.start]:#04x} at offset {exc.start})") from None
    except OSError as exc:
        raise Error(f"TEXT_FILE: cannot read {path!r}: {exc.strerror or exc}") from None
    return text, repr(path)


class Streams:
    """The text as ``batch`` parallel streams, read in consecutive windows of ``seq_len``.

    Stream b is the b-th of ``batch`` equal, contiguous parts of the text.
    Window k holds characters [k·T, (k+1)·T) of every stream as inputs and
    the characters one further on as targets, so the hidden state at the end
    of window k is the right initial state for window k + 1 (stateful
    truncated BPTT). After the last whole window the streams start over.

    Parameters
    ----------
    ids : ndarray of shape (N,), dtype intp
        The encoded text.
    batch, seq_len : int
        B and T.
    """

    def __init__(self, ids, batch, seq_len):
        length = (len(ids) - 1) // batch        # inputs per stream
        if length < seq_len:
            raise Error(f"the text has {len(ids)} characters; --batch {batch} streams of "
                         f"--seq-len {seq_len} need at least {batch * seq_len + 1}: use a "
                         f"longer text or smaller --batch/--seq-len")
        # Time-major (length + 1, B), so every window is a C-contiguous slice
        # the kernels take as it is.
        starts = np.arange(batch) * length
        self._data = ids[np.arange(length + 1)[:, None] + starts[None, :]]
        self._seq_len = seq_len
        self.windows = length // seq_len
        self._next = 0
        self.columns = slice(None)      # --distributed: this rank's streams

    def next(self):
        """The next window: ``(x, target, restart)``.

        ``x`` and ``target`` are token ids of shape (T, B); ``restart`` is
        True when the streams start over and the carried state is stale.
        """
        k = self._next
        self._next = (k + 1) % self.windows
        lo, hi = k * self._seq_len, (k + 1) * self._seq_len
        return self._data[lo:hi], self._data[lo + 1:hi + 1], k == 0


def check_output_path(path, text_path):
    """Fail before training, not after it, when the model cannot be saved at ``path``,
    or saving it would destroy something: the training text, or any file that is
    not a crnn model."""
    if os.path.isdir(path):
        raise Error(f"--out: {path!r} is a directory; give a file name such as model.npz")
    if os.path.exists(path):
        if not os.path.isfile(path):
            raise Error(f"--out: {path!r} exists and is not a regular file")
        if text_path is not None and os.path.exists(text_path) and \
                os.path.samefile(path, text_path):
            raise Error(f"--out: {path!r} is the training text; give the model another "
                         f"name, such as model.npz")
        if not _io.is_model_file(path):
            raise Error(f"--out: {path!r} exists and is not a crnn model; crnn will not "
                         f"write over it (remove it, or give another name)")
    folder = os.path.dirname(os.path.realpath(path))
    if not os.path.isdir(folder):
        raise Error(f"--out: the folder {folder!r} does not exist")
    # Permission bits say little (root, read-only mounts, /proc, /sys): try it.
    probe = os.path.join(folder, f".crnn-write-test.{os.getpid()}.{uuid.uuid4().hex}")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as exc:
        raise Error(f"--out: cannot write in the folder {folder!r}: "
                     f"{exc.strerror or exc}") from None


def save_checkpoint(model, vocab, path):
    """Save ``model`` with its vocabulary (as JSON), atomically, as RNN.save does.

    When ``path`` cannot be written (a full disk, a folder gone), the model is
    saved in the temporary folder instead and Error says where.
    """
    extra = {"vocab": np.array(json.dumps(vocab))}
    try:
        model._save(path, **extra)
        return
    except OSError as exc:
        reason = exc.strerror or str(exc)
    try:
        # A fresh folder of its own: a predictable name in a shared /tmp could be a
        # link planted by someone else, and save follows links.
        fallback = os.path.join(tempfile.mkdtemp(prefix="crnn-"),
                                os.path.basename(path) or "model.npz")
        model._save(fallback, **extra)
    except OSError as exc:
        raise Error(f"cannot save the model to {path!r} ({reason}), nor in the temporary "
                     f"folder ({exc.strerror or exc}): it is lost") from None
    raise Error(f"cannot save the model to {path!r} ({reason}); saved it to {fallback!r} "
                 f"instead")


def load_checkpoint(path):
    """The model and vocabulary saved by :func:`save_checkpoint` at ``path``."""
    try:
        model, extras = _io.load(path, {"RNN": RNN, "LSTM": LSTM, "GRU": GRU},
                                 extras=("vocab",))
    except OSError as exc:
        raise Error(f"MODEL: cannot read {path!r}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise Error(f"MODEL: {str(exc).removeprefix('path: ')}") from None
    if "vocab" not in extras:
        raise Error(f"MODEL: {path!r} has no vocabulary: it is a crnn model but was not "
                     f"saved by 'crnn train'")
    try:
        vocab = json.loads(extras["vocab"])
        if isinstance(vocab, str):
            vocab.encode("utf-8")       # a lone surrogate cannot be printed
    except (ValueError, RecursionError, UnicodeError):
        vocab = None
    # Distinct characters in code-point order, as _corpus.encode expects.
    if not (isinstance(vocab, str) and list(vocab) == sorted(set(vocab))
            and len(vocab) == model.input_size == model.output_size
            and model.output == "softmax" and not model.bidirectional):
        raise Error(f"MODEL: {path!r} is not a character-level model saved by "
                     f"'crnn train' (its vocabulary does not match its sizes)")
    return model, vocab
