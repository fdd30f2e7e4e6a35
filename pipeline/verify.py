"""`python -m pipeline.verify`: the earlier name of `pipeline.tools.verify` (installed: `glip-verify`), kept working."""

import sys

from pipeline.tools.verify import *  # noqa: F401,F403
from pipeline.tools.verify import main

if __name__ == "__main__":
    sys.exit(main())
