"""bayesgmm's logger: progress messages (compiling, sampling) on standard error.

As PyMC does for its own logger, a handler is attached only when the application has
configured no logging of its own; ``logging.getLogger("bayesgmm").setLevel(...)``
quietens or silences it.
"""

from __future__ import annotations

import logging

__all__ = ["logger"]

logger = logging.getLogger("bayesgmm")
if not logging.root.handlers and not logger.handlers:
    logger.setLevel(logging.INFO)
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("bayesgmm: %(message)s"))
    logger.addHandler(_handler)
