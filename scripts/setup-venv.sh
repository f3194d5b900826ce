#!/usr/bin/env bash
# Creates .venv (if missing) and installs the playground with what the offline preset
# needs. llama-cpp-python compiles from source where PyPI has no wheel for this machine:
# that takes minutes on 2 cores, so its build steps are shown as they happen.
set -euo pipefail
venv=${1:-.venv}
python=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv with $($python --version)"
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
if ! "$venv/bin/python" -c "import llama_cpp" 2>/dev/null; then
  echo "setup: installing llama-cpp-python; it may compile llama.cpp from source (several minutes on 2 cores)."
  echo "setup: build progress follows ([step/total])."
  # Show the compiler's step counter, not its full command lines.
  "$venv/bin/python" -m pip install --verbose "llama-cpp-python>=0.3" 2>&1 \
    | grep --line-buffered -E '^\s*\[[0-9]+/[0-9]+\]|Successfully|ERROR|error:' \
    | sed -u -E 's/^\s*(\[[0-9]+\/[0-9]+\]) .*(-o|-c) [^ ]*\/([^ /]+\.(o|a|so)).*/  \1 \3/; s/^(\s*\[[0-9]+\/[0-9]+\]).{70,}$/\1 .../'
fi
echo "setup: installing the playground and the offline models (SmolLM2, Piper voice)"
"$venv/bin/python" -m pip install --quiet --editable ".[offline,test]"
echo "setup: done ($venv)"
