"""`python -m pipeline.tools.evaluate`: the same command as `glip-evaluate`."""

import sys

from pipeline.tools.evaluate.command import main

sys.exit(main())
