"""``python -m bayesgmm.cli``: the ``bayesgmm`` command."""

import sys

from bayesgmm.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
