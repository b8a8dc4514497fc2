#!/usr/bin/env bash
# The README's test command: set up the pinned environment if needed, then run the whole test suite
# (the end-to-end runs through the stock nnU-Net commands included). Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
venv="${NNUNET_FRACTURE_VENV:-$root/.venv}"
cd "$root"
exec "$venv/bin/python" -m pytest "$@"
