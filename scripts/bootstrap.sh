#!/usr/bin/env bash
# Creates .venv and installs the three distributions (editable) plus the dev tools, pinned by
# constraints.txt. Does nothing when none of its inputs changed since the last install.
#
# The interpreter: $PYTHON when set; else the distribution's /usr/bin/python3 when it is 3.11+
# (Debian's is a static, optimised build, as the python:3.11 images the Dockerfiles use are);
# else python3 on PATH. A build from source with default flags (pyenv's, say) runs XRouter's
# Python about a fifth slower per request (docs/performance.md, issue 16's third pass). A .venv
# made with another interpreter is made again.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
at_least_311='import sys; sys.exit(sys.version_info < (3, 11))'
if [ -n "${PYTHON:-}" ]; then
    python=$PYTHON
elif /usr/bin/python3 -c "$at_least_311" 2>/dev/null; then
    python=/usr/bin/python3
else
    python=python3
fi

if ! "$python" -c "$at_least_311" 2>/dev/null; then
    echo "bootstrap: Python 3.11+ is required (found: $("$python" --version 2>&1))" >&2
    exit 1
fi
if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
    "$root/scripts/apt-install.sh" python3-venv
fi

base='import os, sys; print(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))'
if [ -x "$venv/bin/python" ]; then
    made_with=$("$venv/bin/python" -c "$base" 2>/dev/null || true)
    wanted=$("$python" -c "$base")
    if [ "$made_with" != "$wanted" ]; then
        echo "bootstrap: .venv was made with ${made_with:-an interpreter that is gone}; making it again with $wanted"
        rm -rf "$venv"
    fi
fi
inputs=$(cat "$root/constraints.txt" "$root/requirements-dev.txt" \
    "$root/libs/common/pyproject.toml" "$root/services/gateway/pyproject.toml" \
    "$root/services/router/pyproject.toml" | sha256sum | cut -d' ' -f1)
if [ -f "$venv/.installed" ] && [ "$(cat "$venv/.installed")" = "$inputs" ]; then
    exit 0
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
log="$venv/install.log"
echo "bootstrap: installing into .venv (log: $log)"
if ! { "$venv/bin/python" -m pip install --upgrade pip &&
       "$venv/bin/python" -m pip install -c "$root/constraints.txt" \
           -e "$root/libs/common" -e "$root/services/gateway" -e "$root/services/router" \
           -r "$root/requirements-dev.txt"; } > "$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "bootstrap: pip install failed (full log: $log)" >&2
    exit 1
fi
echo "$inputs" > "$venv/.installed"
echo "bootstrap: .venv ready"
