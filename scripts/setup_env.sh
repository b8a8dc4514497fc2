#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv with the pinned package set.
# Idempotent: a stamp holding the hash of constraints.txt + pyproject.toml skips work when nothing changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${NNUNET_FRACTURE_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
stamp="$venv/.nnunet_fracture_stamp"
want="$(cat "$root/constraints.txt" "$root/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
echo "[setup] installing the pinned environment into $venv (first time: about 6.4 GB, a few minutes)"
start=$(date +%s)
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
# '-c constraints.txt' pins every package, torch included, so pip neither picks the local '+cpu' torch wheel
# (incompatible with PyPI's torchvision) nor drifts to newer releases.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -c "$root/constraints.txt" \
    -e "$root[test]"
echo "$want" > "$stamp"
echo "[setup] done in $(( $(date +%s) - start )) s; $(du -sh "$venv" | cut -f1) in $venv"
