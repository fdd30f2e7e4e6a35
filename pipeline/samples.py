"""`python -m pipeline.samples`: the earlier name of `pipeline.tools.sample_shards` (installed: `glip-samples`), kept working."""

import sys

from pipeline.tools.sample_shards import *  # noqa: F401,F403
from pipeline.tools.sample_shards import main

if __name__ == "__main__":
    sys.exit(main())
