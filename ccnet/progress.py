"""Progress reporting for long loops: a tqdm bar on a terminal, plain log lines elsewhere.

A bar redrawn with carriage returns turns into one unreadable line in a CI log, a file or a
pipe, so when stderr is not a terminal the same calls log ``desc: n/total unit`` lines through
the ``ccnet.progress`` logger instead (at most one every ``LINE_INTERVAL_S`` seconds, plus the
last one).  Whoever configures logging (the command line) decides whether those lines show.
Torch-free.
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Iterable, Optional

LINE_INTERVAL_S = 10.0
logger = logging.getLogger("ccnet.progress")


class LineProgress:
    """The subset of tqdm's interface our loops use (iterate, update, set_postfix, close),
    reporting by log lines."""

    def __init__(self, iterable: Optional[Iterable] = None, total: Optional[int] = None,
                 desc: str = "", unit: str = "it", interval: float = LINE_INTERVAL_S):
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.interval, self.n, self.postfix = interval, 0, ""
        self.start = self._last = time.monotonic()
        self._logged_n: Optional[int] = None
        self.closed = False

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._log()

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self._logged_n != self.n:
                self._log()

    def _log(self) -> None:
        self._logged_n = self.n
        done = f"{self.n}/{self.total}" if self.total else str(self.n)
        elapsed = time.monotonic() - self.start
        extra = f", {self.postfix}" if self.postfix else ""
        logger.info("%s: %s %s (%.1f s%s)", self.desc, done, self.unit, elapsed, extra)


def progress_bar(iterable: Optional[Iterable] = None, total: Optional[int] = None,
                 desc: str = "", unit: str = "it", enabled: bool = True, leave: bool = True):
    """A progress reporter over ``iterable`` (or updated by hand up to ``total``); ``None`` when
    ``enabled`` is false.  tqdm on an interactive stderr, :class:`LineProgress` otherwise."""
    if not enabled:
        return None
    if sys.stderr is not None and sys.stderr.isatty():
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr,
                        leave=leave)
    return LineProgress(iterable, total, desc, unit)
