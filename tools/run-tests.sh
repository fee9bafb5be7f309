#!/usr/bin/env bash
# Run the WHOLE napari-gmm test suite, GUI tests included, on a machine with nothing but Python.
#
#   bash tools/run-tests.sh [pytest args...]
#
# 1. Installs Xvfb, xauth and the X/xcb/GL libraries Qt 6 needs through apt where any is missing
#    (Debian/Ubuntu as root, or with sudo); skipped when all are present.
# 2. Creates a virtualenv (NAPARI_GMM_VENV if set, else ./.venv in the checkout) unless it
#    exists, and installs the package editable with its core dependencies: pip install -e .
# 3. Starts compiling the Numba kernels into their on-disk cache, in the background (python -m
#    napari_gmm.precompile), so that the test processes load them instead of each compiling the
#    same ones.
# 4. Meanwhile installs the [testing] extra's requirements (napari, PyQt6, pytest...): together with
#    step 2, what pip install -e ".[testing]" installs.
# 5. Runs ruff (lint and format check, as pyproject.toml configures it); a finding fails the run.
#    Then waits for the precompile.
# 6. Runs pytest under `xvfb-run -a` with QT_QPA_PLATFORM=xcb (napari's canvas needs a real X
#    server; Qt's offscreen platform cannot render it) and exits with pytest's exit code. pytest's
#    summary line is the last line printed (nothing is printed after pytest). Exit code 5 (no test
#    collected: pytest prints "no tests ran") is passed on as is, i.e. a failure.
#
# Environment: PYTHON (interpreter that creates the venv, default python3), NAPARI_GMM_VENV,
# NAPARI_GMM_SKIP_INSTALL=1 (use the venv as it is), NUMBA_NUM_THREADS (default 2),
# NAPARI_GMM_TEST_WORKERS (pytest-xdist worker processes, default 2; 0 = none), NAPARI_GMM_PRECOMPILE=0
# (no precompile step: the tests compile what they use).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Python's bytecode caches (.pyc) are written as modules are first imported (pip installs with
# --no-compile below): the later interpreters (the precompile workers, the pytest workers, the
# tests' fresh interpreters: the demo, npe2, pip wheel...) load napari, Qt, Numba and SciPy from
# them instead of compiling their sources again. An inherited PYTHONDONTWRITEBYTECODE=1 made every
# one of them compile every module it imports, and pytest re-rewrite napari's modules each time.
unset PYTHONDONTWRITEBYTECODE
cd "$here"
log() { printf 'run-tests: %s\n' "$*" >&2; }

# --- 1. system packages -------------------------------------------------------------------
apt_packages=(xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-cursor0
              libxcb-shape0 libxcb-randr0 libxcb-render-util0 libxcb-image0 libxkbcommon-x11-0
              libegl1 libopengl0 libgl1 libfontconfig1 libdbus-1-3)
if command -v dpkg-query >/dev/null 2>&1; then
    missing=()
    for p in "${apt_packages[@]}"; do
        status="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
        [[ "$status" == *"ok installed"* ]] || missing+=("$p")
    done
    if ((${#missing[@]})); then
        sudo=()
        if [[ "$(id -u)" != 0 ]]; then
            if command -v sudo >/dev/null 2>&1; then sudo=(sudo -n); else
                log "missing system packages ${missing[*]} and not root (no sudo): install them first"
                exit 1
            fi
        fi
        log "installing system packages: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        "${sudo[@]}" apt-get update -q >&2
        "${sudo[@]}" apt-get install -y -q -o DPkg::Lock::Timeout=900 "${apt_packages[@]}" >&2
    else
        log "system packages present (Xvfb, xcb, GL)"
    fi
elif ! command -v xvfb-run >/dev/null 2>&1; then
    log "no dpkg and no xvfb-run: install Xvfb (xvfb-run) and Qt's xcb libraries by hand"
    exit 1
fi

# --- 2. virtualenv --------------------------------------------------------------------------
venv="${NAPARI_GMM_VENV:-$here/.venv}"
py="$venv/bin/python"
if [[ ! -x "$py" ]]; then
    log "creating virtualenv $venv with ${PYTHON:-python3}"
    if ! "${PYTHON:-python3}" -m venv "$venv"; then
        # Debian's own python3 needs python3-venv for ensurepip
        if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
            log "installing python3-venv"
            rm -rf "$venv"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=900 \
                python3-venv >&2
            "${PYTHON:-python3}" -m venv "$venv"
        else
            exit 1
        fi
    fi
    "$py" -m pip install -q --disable-pip-version-check --upgrade pip >&2
fi
# The library with its core dependencies first: the kernels' precompile (step 3) needs nothing
# else, so it compiles while pip installs the test extras (napari, Qt, dask, OpenCV...). pip's
# unpacking needs a core too: venv + install + precompile took 127.4 s this way against 132.5 s
# one after the other (fresh clones, back to back, 2 cores).
# --no-compile: no byte-compiling of every installed module up front (napari, Qt, numba...):
# 35 s instead of 62 s here; the modules the tests import are compiled when first imported
pip_install() { "$py" -m pip install -q --no-compile --disable-pip-version-check "$@" >&2; }
install="${NAPARI_GMM_SKIP_INSTALL:-0}"
if [[ "$install" != 1 ]]; then
    log "pip install -e . (the library and its core dependencies) into $venv"
    pip_install -e .
fi

# --- 3. the Numba kernels into the on-disk cache, in the background ------------------------------
# Each pytest worker would otherwise compile every kernel it meets (a cold cache on a fresh clone:
# most of the suite's CPU time, the background kernels alone ~30 s each), the two workers the same
# ones. One precompile pass, its tasks spread over the same number of processes, compiles each once,
# while steps 4 and 5 run; pytest starts when it has finished.
export NUMBA_NUM_THREADS="${NUMBA_NUM_THREADS:-2}"
workers="${NAPARI_GMM_TEST_WORKERS:-2}"
precompile_pid=""
if [[ "${NAPARI_GMM_PRECOMPILE:-1}" != 0 ]]; then
    log "compiling the Numba kernels into their cache: python -m napari_gmm.precompile --jobs $((workers > 0 ? workers : 1))"
    "$py" -m napari_gmm.precompile --jobs "$((workers > 0 ? workers : 1))" >&2 &
    precompile_pid=$!
    # a failed install or lint below stops the script: stop the compiler with it
    trap '[[ -z "$precompile_pid" ]] || kill "$precompile_pid" 2>/dev/null || true' EXIT
fi

# --- 4. the test extras (the project itself is not reinstalled under the running precompile) ----
if [[ "$install" != 1 ]]; then
    # the [testing] extra's requirements, its references to the project's other extras expanded
    mapfile -t testing_reqs < <("$py" - <<'PY'
import re
import tomllib

with open("pyproject.toml", "rb") as f:
    extras = tomllib.load(f)["project"]["optional-dependencies"]


def expand(name):
    for req in extras[name]:
        own = re.fullmatch(r"napari-gmm\[([^\]]+)\]", req.replace(" ", ""))
        if own:
            for sub in own.group(1).split(","):
                yield from expand(sub)
        else:
            yield req


print("\n".join(dict.fromkeys(expand("testing"))))
PY
    )
    log "pip install the [testing] extra (${#testing_reqs[@]} requirements) into $venv"
    pip_install "${testing_reqs[@]}"
fi

# --- 5. lint and format (ruff, configured in pyproject.toml) ----------------------------------
log "ruff check and ruff format --check"
"$py" -m ruff check --quiet . >&2 || { log "ruff check failed: run 'ruff check --fix .'"; exit 1; }
"$py" -m ruff format --check --quiet . >&2 || { log "not formatted: run 'ruff format .'"; exit 1; }

if [[ -n "$precompile_pid" ]]; then
    wait "$precompile_pid" || log "precompile failed: the tests compile what they need (and show the error)"
    precompile_pid=""
fi

# --- 6. pytest under Xvfb ---------------------------------------------------------------------
export QT_QPA_PLATFORM=xcb QT_API=pyqt6 PYTEST_QT_API=pyqt6
unset DISPLAY WAYLAND_DISPLAY
log "running pytest under xvfb-run ($("$py" -c 'import sys; print(sys.version.split()[0])'), NUMBA_NUM_THREADS=$NUMBA_NUM_THREADS)"
# exec: pytest's exit code is the script's, and nothing is printed after its summary line
# -n 2: two worker processes (pytest-xdist). With a cold Numba cache (a fresh clone, as on CI) most
# of the suite's time is compiling kernels, one core each; NAPARI_GMM_TEST_WORKERS=0 runs in one.
exec xvfb-run -a -s "-screen 0 1600x1000x24" "$py" -m pytest -n "$workers" "$@" </dev/null
