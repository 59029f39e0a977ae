"""Holding Ctrl-C (and a SIGTERM handler) back while something must happen whole.

An update of the parameters is several array operations; a restore after a
failure is several more. Python runs a signal's handler between any two
bytecodes, so a KeyboardInterrupt can land between them and leave half of an
update applied. :class:`Guard` wraps the Python handlers of SIGINT and SIGTERM
once (a handler swap costs microseconds, too much for every step) and, inside
``with guard.hold():``, only records a signal; it is handled, as it would have
been, the moment the block ends. Outside ``hold()`` signals act at once, so a
long computation still stops on Ctrl-C.

Signals whose handler is not a Python function (SIG_DFL, SIG_IGN) are left
alone, and so is everything off the main thread, where Python cannot install
handlers (and never runs them).
"""

import contextlib
import signal
import threading

_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM")
                 if hasattr(signal, name))


class Guard:
    """Use as ``with Guard() as guard: ... with guard.hold(): ...``."""

    def __init__(self):
        self._original = {}
        self._holding = 0
        self._pending = None

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        # Installed under hold: a signal arriving meanwhile is recorded, and then
        # handled only once every wrapper is gone again (nothing is left behind).
        self._holding += 1
        try:
            for sig in _SIGNALS:
                handler = signal.getsignal(sig)
                if callable(handler):
                    self._original[sig] = handler
                    signal.signal(sig, self._handle)
        finally:
            self._holding -= 1
        if self._pending is not None:
            originals = dict(self._original)
            self.__exit__()
            self._original.clear()
            signum, frame = self._pending
            self._pending = None
            originals[signum](signum, frame)
        return self

    @property
    def pending(self):
        """The signal number held back by hold(), or None."""
        return None if self._pending is None else self._pending[0]

    def __exit__(self, *exc):
        # SIGINT last: a SIGTERM handled while SIGTERM's handler is put back
        # cannot leave SIGINT's wrapped, and a Ctrl-C meanwhile is still recorded.
        originals = sorted(self._original.items(), key=lambda item: item[0] == signal.SIGINT)
        self._restore(originals)
        return False

    def _restore(self, originals):
        if not originals:
            return
        (sig, handler), rest = originals[0], originals[1:]
        try:
            signal.signal(sig, handler)
        finally:
            self._restore(rest)

    def _handle(self, signum, frame):
        if self._holding:
            # One is kept: the first, unless a SIGTERM (stop, and say so) follows.
            if self._pending is None or signum == getattr(signal, "SIGTERM", None):
                self._pending = (signum, frame)
            return
        self._original[signum](signum, frame)

    @contextlib.contextmanager
    def hold(self):
        """Run the block whole: a signal arriving inside is handled after it."""
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1
            if not self._holding and self._pending is not None:
                signum, frame = self._pending
                self._pending = None
                self._original[signum](signum, frame)
