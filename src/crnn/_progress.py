"""The progress bar of ``RNN.fit``: tqdm when it is installed, one plain line otherwise."""

import sys
import time


class Bar:
    """A progress bar over ``total`` steps showing the running loss and steps/s.

    tqdm is optional and imported only when a bar is shown; without it a
    single line on stderr is rewritten at most ten times a second.
    """

    def __init__(self, total, desc, *, enabled=True):
        self.total, self.desc, self.enabled = total, desc, enabled
        self.start = time.perf_counter()
        self.n = 0
        self._last = 0.0
        self._tqdm = None
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                pass
            else:
                self._tqdm = tqdm(total=total, desc=desc, leave=False, unit="step")

    @property
    def elapsed(self):
        return time.perf_counter() - self.start

    def update(self, loss):
        """One more step done; ``loss`` is the running mean loss."""
        self.n += 1
        if not self.enabled:
            return
        if self._tqdm is not None:
            self._tqdm.set_postfix(loss=f"{loss:.4g}", refresh=False)
            self._tqdm.update(1)
            return
        now = time.perf_counter()
        if now - self._last >= 0.1 or self.n == self.total:
            self._last = now
            rate = self.n / max(self.elapsed, 1e-9)
            sys.stderr.write(f"\r{self.desc}  {self.n}/{self.total}  loss {loss:.4g}  "
                             f"{rate:.1f} steps/s ")
            sys.stderr.flush()

    def close(self):
        if not self.enabled:
            return
        if self._tqdm is not None:
            self._tqdm.close()
        else:
            # Clear the line so the epoch summary printed next starts clean.
            sys.stderr.write("\r" + " " * 79 + "\r")
            sys.stderr.flush()
