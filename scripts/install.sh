#!/usr/bin/env bash
# Install kcore from this checkout into its own virtual environment (/opt/kcore/venv by
# default) and link the `kcore` command into /usr/local/bin. Run as root on Debian.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${KCORE_VENV:-/opt/kcore/venv}
py=${PYTHON:-python3}

need=()
command -v "$py" >/dev/null 2>&1 || need+=(python3)
"$py" -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
# What the embedded defaults use on the node: nft for net_bridge's table, a static busybox
# for the starter image.
for d in nftables iproute2 busybox-static; do dpkg -s "$d" >/dev/null 2>&1 || need+=("$d"); done
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
    py=python3
fi
"$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "kcore needs Python 3.11 or newer; $py is $("$py" --version)" >&2; exit 1; }

[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "$here"
ln -sf "$venv/bin/kcore" /usr/local/bin/kcore
echo "kcore $("$venv/bin/kcore" --version | awk '{print $NF}') installed: /usr/local/bin/kcore -> $venv/bin/kcore"
