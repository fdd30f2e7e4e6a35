"""`python -m pipeline.export`: the earlier name of `pipeline.tools.export` (installed: `glip-export`), kept working."""

import sys

from pipeline.tools.export import *  # noqa: F401,F403
from pipeline.tools.export import main

if __name__ == "__main__":
    sys.exit(main())
