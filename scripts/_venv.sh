# Sourced by scripts/demo and scripts/test: make .venv (Python >= 3.11) with budgetguard installed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "budgetguard needs Python >= 3.11 (found: $("$PYTHON" --version 2>&1)); set PYTHON=..." >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# $1: the extras to install. Quiet unless it fails; re-running is cheap when nothing changed.
install_budgetguard() {
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[$1]" 2>&1 \
    | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import budgetguard" || { echo "installing budgetguard failed" >&2; exit 1; }
}
