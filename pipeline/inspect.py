"""`python -m pipeline.inspect`: the earlier name of `pipeline.tools.inspect_output` (installed: `glip-inspect`), kept working."""

import sys

from pipeline.tools.inspect_output import *  # noqa: F401,F403
from pipeline.tools.inspect_output import main

if __name__ == "__main__":
    sys.exit(main())
