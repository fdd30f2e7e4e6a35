#!/usr/bin/env bash
# The test command (README, and CI through .ci/run): a new virtual environment built from the lock,
# nothing reused from an earlier run, then the import contracts (`lint-imports`, pyproject.toml) and
# the whole suite in it. Extra arguments go to pytest.
#
# The environment lives in a new temporary folder and is removed at the end; set KEEP_VENV=DIR to
# build it there instead and keep it. The install is strict: exactly the packages of
# requirements/lock-dev.txt (--no-deps), then `pip check`, so a dependency missing from the lock,
# or a lock that no longer installs, fails here instead of being hidden by what a machine has.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
venv=${KEEP_VENV:-$(mktemp -d "${TMPDIR:-/tmp}/glip-test-venv.XXXXXX")}
[ -n "${KEEP_VENV:-}" ] || trap 'rm -rf "$venv"' EXIT
python3 -m venv --clear "$venv"
. "$venv/bin/activate"
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# pip's own status stays; the notes about this machine's extra package folders do not.
pip_quietly() { python -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
pip_quietly install -q --no-deps -r requirements/lock-dev.txt
pip_quietly install -q --no-deps -e .
python -m pip check
echo "fresh environment $venv ($(python --version), torch $(python -c 'import torch; print(torch.__version__)')) installed in $(( $(date +%s) - started ))s"
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "chromium could not be installed: the gallery browser test will be skipped"
fi
export RAY_USAGE_STATS_ENABLED=0 TOKENIZERS_PARALLELISM=false
lint-imports --no-cache  # the layers and import rules of pyproject.toml; a broken contract fails the run
python -m pytest -q -p no:cacheprovider --durations=15 "$@"
echo "tests done in $(( $(date +%s) - started ))s in all"
