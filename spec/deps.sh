#!/usr/bin/env bash
# The Debian bookworm packages `make spec` needs: pdflatex (texlive-latex-base),
# listings and the other LaTeX packages the chapter uses
# (texlive-latex-recommended), and tex4ht's htlatex for the HTML
# (texlive-plain-generic; its tex4ht and t4ht binaries come with
# texlive-binaries).  About 220 MB installed, no network at build time.
# The lead merges `spec_pkgs` into scripts/setup.sh; until then this script
# installs them itself (as root) when one is missing.  Idempotent.
set -euo pipefail

spec_pkgs=(texlive-latex-base texlive-latex-recommended texlive-plain-generic)

if dpkg -s "${spec_pkgs[@]}" >/dev/null 2>&1; then
	exit 0
fi
[ "$(id -u)" -eq 0 ] || {
	echo "spec/deps.sh: missing packages, run as root: apt-get install" \
		"--no-install-recommends ${spec_pkgs[*]}" >&2
	exit 1
}
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${spec_pkgs[@]}" >/dev/null
echo "spec/deps.sh: ${spec_pkgs[*]} installed"
