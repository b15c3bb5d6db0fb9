#!/usr/bin/env bash
# Install kcore and start the daemon on the embedded defaults (store_sqlite): the API
# server on https://127.0.0.1:6443, state in /var/lib/kcore, the admin kubeconfig written
# to /var/lib/kcore/admin.kubeconfig (the daemon prints the `export KUBECONFIG=...` line).
# Extra arguments go to `kcore daemon` (for example --port 7443 or --bind-address 0.0.0.0).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/install.sh"
exec "${KCORE_VENV:-/opt/kcore/venv}/bin/kcore" daemon "$@"
