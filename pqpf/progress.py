"""Progress lines for long loops, through :mod:`logging` (never print)."""

from __future__ import annotations

import logging
import time

__all__ = ["Progress"]


class Progress:
    """Log ``done/total``, rate and time left at most every ``every_s`` seconds.

    Examples
    --------
    >>> progress = Progress(len(hours), "hours", logger)   # doctest: +SKIP
    >>> for hour in hours:                                  # doctest: +SKIP
    ...     work(hour); progress.step()
    """

    def __init__(self, total: int, what: str, log: logging.Logger, every_s: float = 10.0) -> None:
        self.total = int(total)
        self.what = what
        self.log = log
        self.every_s = every_s
        self.done = 0
        self._start = time.monotonic()
        self._last = self._start

    def step(self, n: int = 1, note: str = "") -> None:
        """Count ``n`` more items done; log if ``every_s`` passed or the loop finished."""
        self.done += n
        now = time.monotonic()
        if now - self._last < self.every_s and self.done < self.total:
            return
        self._last = now
        elapsed = now - self._start
        per_item = elapsed / max(self.done, 1)
        left = per_item * max(self.total - self.done, 0)
        pct = 100.0 * self.done / max(self.total, 1)
        extra = f", {note}" if note else ""
        self.log.info(
            "%d/%d %s (%.0f%%), %.2f s each, %s left%s",
            self.done, self.total, self.what, pct, per_item, _fmt_seconds(left), extra,
        )


def _fmt_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
