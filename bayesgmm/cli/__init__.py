"""The command line: ``bayesgmm fit``, ``bayesgmm run`` and ``bayesgmm demo``.

:func:`main` is the entry point; :mod:`bayesgmm.cli.main` holds the commands and
:mod:`bayesgmm.cli.specs` the TOML model specs. ``bayesgmm --help`` imports neither
PyMC nor JAX.
"""

from bayesgmm.cli.main import main

__all__ = ["main"]
