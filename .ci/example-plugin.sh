#!/usr/bin/env bash
# End-to-end plugin authoring, as a user does it, in the current (CI) virtualenv:
#   1. install the worked example examples/mixbench-fourier, list it, bench and train it, and
#      run its own tests;
#   2. scaffold a new plugin with `mixbench new-plugin`, install it editable, run its tests,
#      bench and train it.
# Every bench and train row must have status ok (.ci/check_rows.py): a run whose cells all
# errored still writes a results file. EXAMPLE=DIR checks another copy of the example (a
# deliberately broken one must fail this script). Everything it installs is uninstalled
# again on exit, whatever happened.
set -euo pipefail
cd "$(dirname "$0")/.."

# The test suite sets MIXBENCH_PLUGINS="" (built-ins only); a user's shell does not.
unset MIXBENCH_PLUGINS

TMP="$(mktemp -d)"
installed=()
cleanup() {
  status=$?
  if ((${#installed[@]})); then
    python -m pip uninstall --yes --quiet "${installed[@]}" || true
  fi
  rm -rf "$TMP"
  exit "$status"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }
# No build isolation: the build backend (setuptools) is already in the venv, so installing
# needs no network and takes seconds.
pip_install() { python -m pip install --quiet --no-build-isolation "$@"; }

step "install the worked example"
# Built from a copy: building in place would leave build/ and src/*.egg-info in the
# checkout, and an egg-info next to the sources is an installed distribution to anything
# that puts src/ on sys.path.
cp -r "${EXAMPLE:-examples/mixbench-fourier}" "$TMP/mixbench-fourier"
installed+=(mixbench-fourier)
pip_install "$TMP/mixbench-fourier"
plugins="$(mixbench plugins)"
grep -q fourier <<<"$plugins"
grep -q lion <<<"$plugins"
mixbench list mixers | grep fourier
mixbench list optimizers | grep lion

step "bench it"
mixbench bench --mixer fourier --quick --out "$TMP/fourier-bench"
python .ci/check_rows.py "$TMP/fourier-bench"

step "train it with its optimizer"
mixbench train --mixer fourier --optimizer lion --task digits --steps 30 --out "$TMP/fourier-train"
python .ci/check_rows.py "$TMP/fourier-train"

step "its own tests"
python -m pytest -q -p no:cacheprovider "$TMP/mixbench-fourier"

step "scaffold a new plugin and use it"
(
  cd "$TMP"
  mixbench new-plugin my-mixer
  if mixbench new-plugin my-mixer 2>/dev/null; then
    echo "new-plugin overwrote an existing directory" >&2
    exit 1
  fi
)
installed+=(my-mixer)
pip_install -e "$TMP/my-mixer"
mixbench list mixers | grep my_mixer
python -m pytest -q -p no:cacheprovider "$TMP/my-mixer"
mixbench bench --mixer my_mixer --quick --out "$TMP/my-bench"
python .ci/check_rows.py "$TMP/my-bench"
mixbench train --mixer my_mixer --task digits --steps 30 --out "$TMP/my-train"
python .ci/check_rows.py "$TMP/my-train"

step "example plugin checks passed"
