#!/usr/bin/env bash
# The README's demo command: set up the pinned environment if needed, then run
# phantom -> convert -> plan -> train (short) -> predict -> report. Extra arguments go to the demo.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
venv="${NNUNET_FRACTURE_VENV:-$root/.venv}"
cd "$root"
exec "$venv/bin/python" -m nnunet_fracture.demo "$@"
