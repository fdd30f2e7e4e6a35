"""`python -m pipeline.evaluate`: label quality against gold (`pipeline.tools.evaluate`; installed: `glip-evaluate`)."""

import sys

from pipeline.tools.evaluate import *  # noqa: F401,F403
from pipeline.tools.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
