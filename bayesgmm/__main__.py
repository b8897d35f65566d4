"""``python -m bayesgmm``: the command line (the same as the ``bayesgmm`` script)."""

import sys


def _run() -> int:
    from bayesgmm.cli import main  # the surface tier, imported when the command runs

    return main()


if __name__ == "__main__":
    sys.exit(_run())
