"""`python -m VQSegCore` is the same program as the `vqseg` console script."""

import sys

from VQSegCore.cli import main

if __name__ == "__main__":
    sys.exit(main())
