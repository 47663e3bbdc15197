#!/usr/bin/env bash
# make demo: install what is needed, then boot a VM and show the balloon.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bash "$VB13_TOP/scripts/setup.sh"
bash "$VB13_TOP/scripts/build-qemu.sh" >/dev/null
bash "$VB13_TOP/scripts/fetch-kernels.sh" 6.12 >/dev/null
exec python3 "$VB13_TOP/scripts/demo.py"
