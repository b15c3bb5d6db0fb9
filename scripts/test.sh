#!/usr/bin/env bash
# Install everything the tests need (Debian packages and Python packages, into .venv in the
# checkout) and run the whole test suite and the linters. Run as root on Debian.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}

debs=(etcd-server busybox-static iproute2 iputils-ping openssl nftables docker-registry skopeo
    apache2-utils util-linux git)
# kubectl is on these machines; elsewhere Debian's kubernetes-client provides it.
command -v kubectl >/dev/null 2>&1 || debs+=(kubernetes-client)
command -v "$py" >/dev/null 2>&1 || debs+=(python3)
"$py" -c 'import venv, ensurepip' >/dev/null 2>&1 || debs+=(python3-venv)
missing=()
for d in "${debs[@]}"; do dpkg -s "$d" >/dev/null 2>&1 || missing+=("$d"); done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi
command -v "$py" >/dev/null 2>&1 || py=python3

[ -x .venv/bin/python ] || "$py" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
export PATH="$PWD/.venv/bin:$PATH"

ruff check .
ruff format --check .
# KCORE_NO_SKIPS: a skip is a failure, except a conformance suite's declared missing capability.
KCORE_NO_SKIPS=1 python -m pytest "$@"
# The example plugins, each installed into a fresh virtual environment as an outside author
# would, then `kcore conformance` and their own tests.
bash scripts/test_examples.sh
