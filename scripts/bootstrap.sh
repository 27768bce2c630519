#!/usr/bin/env bash
# Creates .venv and installs the three distributions (editable) plus the dev tools, pinned by
# constraints.txt. Does nothing when none of its inputs changed since the last install.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
python=${PYTHON:-python3}

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "bootstrap: Python 3.11+ is required (found: $("$python" --version 2>&1))" >&2
    exit 1
fi
if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
    "$root/scripts/apt-install.sh" python3-venv
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
