#!/usr/bin/env bash
# Install kcore and start it on the embedded defaults (store_sqlite).
#
# The API server and the daemon that kubectl talks to arrive with the "API server" issue;
# until then this installs kcore and shows what it loads on the embedded defaults.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/install.sh"
exec kcore plugins "$@"
