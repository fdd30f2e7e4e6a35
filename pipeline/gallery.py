"""`python -m pipeline.gallery`: the earlier name of `pipeline.tools.gallery` (installed: `glip-gallery`), kept working."""

import sys

from pipeline.tools.gallery import *  # noqa: F401,F403
from pipeline.tools.gallery import main

if __name__ == "__main__":
    sys.exit(main())
