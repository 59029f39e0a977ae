"""Text for character-level models: the default corpus and the character vocabulary.

The default corpus is the English documentation that ships with every
CPython as ``pydoc_data.topics`` (what ``help("if")`` prints), about 460 kB,
so ``crnn train`` has something real to learn from without a download.

A vocabulary is a string of distinct characters in code-point order; a
character's token id is its index in that string.
"""

import numpy as np

__all__ = ["default_text", "make_vocab", "encode", "decode"]

DEFAULT_NAME = "pydoc_data.topics"


def default_text():
    """The default training text: every topic of ``pydoc_data.topics``, joined.

    Returns
    -------
    text : str

    Raises
    ------
    ImportError
        This Python was installed without ``pydoc_data`` (some distributions
        split it off).
    """
    from pydoc_data.topics import topics

    # Sorted by topic name so the text (and so a seeded run) does not depend
    # on the order the module happens to list them in.
    return "\n".join(topics[name] for name in sorted(topics))


def make_vocab(text):
    """The sorted distinct characters of ``text``, as one string.

    Parameters
    ----------
    text : str

    Returns
    -------
    vocab : str
        ``vocab[i]`` is the character of token id ``i``.
    """
    return "".join(sorted(set(text)))


def _code_points(text):
    # UTF-32 gives one fixed-width integer per character: the whole text is
    # converted in one numpy pass rather than a Python loop over characters.
    return np.frombuffer(text.encode("utf-32-le"), dtype="<u4")


def encode(text, vocab):
    """Token ids of the characters of ``text``.

    Parameters
    ----------
    text : str
    vocab : str
        As returned by :func:`make_vocab`.

    Returns
    -------
    ids : ndarray of shape (len(text),), dtype intp

    Raises
    ------
    ValueError
        ``text`` has characters that are not in ``vocab``; the message lists them.
    """
    table = _code_points(vocab)
    points = _code_points(text)
    ids = np.searchsorted(table, points)
    found = ids < len(table)
    found[found] = table[ids[found]] == points[found]
    if not found.all():
        missing = "".join(sorted(set(text) - set(vocab)))
        raise ValueError(f"characters not in the model's vocabulary: {missing!r}")
    return ids.astype(np.intp, copy=False)


def decode(ids, vocab):
    """The text of token ids ``ids`` (any iterable of ints in [0, len(vocab)))."""
    return "".join(vocab[i] for i in ids)
