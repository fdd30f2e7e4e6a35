#!/usr/bin/env bash
# Regenerate the locks from pyproject.toml (needs uv: pip install uv). Linux x86-64, Python 3.10-3.12,
# the CPU build of torch (see requirements/constraints.txt and [tool.uv] in pyproject.toml).
#   requirements/lock.txt      what the job needs
#   requirements/lock-dev.txt  the same versions, plus the test extras
set -euo pipefail
cd "$(dirname "$0")/.."
uv pip compile pyproject.toml --universal --python-version 3.10 -c requirements/constraints.txt \
  --annotation-style line -o requirements/lock.txt "$@"
uv pip compile pyproject.toml --extra dev --universal --python-version 3.10 -c requirements/constraints.txt \
  -c requirements/lock.txt --annotation-style line -o requirements/lock-dev.txt "$@"
