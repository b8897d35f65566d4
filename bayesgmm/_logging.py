"""bayesgmm's logger and progress bar: progress messages (compiling, sampling) on stderr.

As PyMC does for its own logger, a handler is attached only when the application has
configured no logging of its own; ``logging.getLogger("bayesgmm").setLevel(...)``
quietens or silences it. The handler writes to whatever ``sys.stderr`` is when a
message is logged (as :data:`logging.lastResort` does), so redirected or captured
standard error receives it.

:func:`progress_bar` draws a ``tqdm`` bar when standard error is a terminal (or in a
Jupyter notebook); otherwise (a CI log, ``| tee``, a file) it logs a plain line every
10% of the work, with no carriage returns.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from typing import Any

__all__ = ["PlainProgress", "logger", "progress_bar"]


class _StderrHandler(logging.StreamHandler):
    """A stream handler on the current ``sys.stderr``, looked up at every message."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr


logger = logging.getLogger("bayesgmm")
if not logging.root.handlers and not logger.handlers:
    logger.setLevel(logging.INFO)
    _handler = _StderrHandler()
    _handler.setFormatter(logging.Formatter("bayesgmm: %(message)s"))
    logger.addHandler(_handler)


class PlainProgress:
    """Progress as plain log lines: one each time another tenth of ``total`` is done.

    Each line reads like ``NUTS[numpyro]: 40% (3200/8000 steps, 4 chains), 5.1 s``.
    Safe to update from several threads. It has the part of ``tqdm``'s interface that
    bayesgmm uses: ``update``, ``total`` (which may grow), ``set_description``, ``refresh``
    and ``close``.

    Examples
    --------
    >>> lines = []
    >>> bar = PlainProgress(100, "work", detail="2 chains", write=lines.append)
    >>> for _ in range(4):
    ...     bar.update(25)
    >>> bar.close()
    >>> [line.split(" (")[0] for line in lines]
    ['work: 25%', 'work: 50%', 'work: 75%', 'work: 100%']
    >>> lines[-1].split(", 2 chains")[0]
    'work: 100% (100/100 steps'
    """

    def __init__(
        self,
        total: int,
        desc: str,
        *,
        unit: str = "steps",
        detail: str = "",
        write: Any = None,
    ) -> None:
        self.total, self.desc, self.unit, self.detail = int(total), desc, unit, detail
        self.n = 0
        self._write = write or logger.info
        self._t0 = time.perf_counter()
        self._lock = threading.Lock()
        self._tenths = 0  # tenths of the total already reported
        self._last = -1  # n at the last line

    def _line(self) -> str:
        pct = math.floor(100 * self.n / self.total) if self.total else 100
        extra = f", {self.detail}" if self.detail else ""
        seconds = time.perf_counter() - self._t0
        return f"{self.desc}: {pct}% ({self.n}/{self.total} {self.unit}{extra}), {seconds:.1f} s"

    def update(self, n: int = 1) -> None:
        """Count ``n`` more steps done; log a line when another tenth is complete."""
        with self._lock:
            self.n += int(n)
            tenths = math.floor(10 * self.n / self.total) if self.total else 10
            if tenths > self._tenths:
                self._tenths = tenths
                self._last = self.n
                self._write(self._line())

    def set_description(self, desc: str, refresh: bool = True) -> None:
        """Change the label of the next lines (``tqdm``'s name for it)."""
        with self._lock:
            self.desc = desc

    def refresh(self) -> None:
        """Take a changed ``total`` into account (more work: the next line comes later)."""
        with self._lock:
            self._tenths = math.floor(10 * self.n / self.total) if self.total else 10

    def close(self) -> None:
        """Log the final count, unless the last line showed it already."""
        with self._lock:
            if self._last != self.n:
                self._last = self.n
                self._write(self._line())


def _in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (where tqdm draws a widget)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def _terminal_size() -> tuple[int, int]:
    """Columns and lines of the terminal behind stderr; 80 x 24 where it reports 0 (as
    under ``script``), which would make tqdm draw an empty bar or none at all."""
    try:
        columns, lines = os.get_terminal_size(sys.stderr.fileno())
    except (AttributeError, ValueError, OSError):
        columns, lines = 0, 0
    return (columns if columns > 0 else 80), (lines if lines > 0 else 24)


def progress_bar(total: int, desc: str, *, unit: str = "steps", detail: str = "") -> Any:
    """A progress bar for ``total`` steps: ``tqdm`` on a terminal or in a notebook, else
    :class:`PlainProgress` (plain lines, every 10%, through the ``bayesgmm`` logger).

    Examples
    --------
    >>> bar = progress_bar(10, "demo")  # doctest output is not a terminal: plain lines
    >>> isinstance(bar, PlainProgress)
    True
    """
    stream = sys.stderr
    is_tty = bool(getattr(stream, "isatty", lambda: False)())
    if is_tty or _in_notebook():
        try:
            if is_tty:
                from tqdm import tqdm
            else:
                from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - numpyro depends on tqdm
            pass
        else:
            return tqdm(
                total=total,
                desc=desc,
                unit="it",
                postfix=detail or None,
                **(dict(zip(("ncols", "nrows"), _terminal_size(), strict=True)) if is_tty else {}),
                file=stream,
            )
    return PlainProgress(total, desc, unit=unit, detail=detail)
