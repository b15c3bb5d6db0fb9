#!/usr/bin/env bash
# Install kcore and start the daemon on the embedded defaults (store_sqlite, runtime_linux,
# net_bridge, volumes; a node agent runs the pods): the API server on
# https://127.0.0.1:6443, state in /var/lib/kcore, the admin kubeconfig written to
# /var/lib/kcore/admin.kubeconfig (the daemon prints the `export KUBECONFIG=...` line).
# Extra arguments go to `kcore daemon` (for example --port 7443 or --bind-address 0.0.0.0).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/install.sh"
venv=${KCORE_VENV:-/opt/kcore/venv}
# A starter image, so that pods run before any registry is configured:
# kcore.local/busybox:latest, built from Debian's static busybox.
if ! "$venv/bin/kcore" image ls | grep -q '^kcore.local/busybox'; then
    layout=$(mktemp -d)
    "$venv/bin/python" -c 'import sys, pathlib; from kcore.conformance.testimages import build_busybox_layout; build_busybox_layout(pathlib.Path(sys.argv[1]) / "l", ref_name="kcore.local/busybox:latest")' "$layout"
    "$venv/bin/kcore" image import "$layout/l" --tag kcore.local/busybox:latest >/dev/null
    rm -rf "$layout"
fi
exec "$venv/bin/kcore" daemon "$@"
