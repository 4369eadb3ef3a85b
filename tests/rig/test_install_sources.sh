#!/bin/bash
# The rig's backports entry comes from this system's own bookworm source
# (deb822 or one-line, any mirror or proxy, its keyring), never a fixed
# host; with no bookworm source it refuses. Runs install-deps.sh
# --print-source against made-up apt directories; needs no root, no network.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0

# expect NAME WANT_URI WANT_KEY: APT_ETC=$tmp/NAME must give that entry.
expect() {
    local got want
    got=$(APT_ETC="$tmp/$1" "$here/install-deps.sh" --print-source 2>&1) || true
    want="Types: deb deb-src
URIs: $2
Suites: bookworm-backports
Components: main
Signed-By: $3"
    if [ "$got" = "$want" ]; then
        echo "PASS $1"
    else
        printf 'FAIL %s: got\n%s\nwanted\n%s\n' "$1" "$got" "$want"
        fails=$((fails + 1))
    fi
}

mkdir -p "$tmp"/{deb822,oneline,oneline-plain,security-first,none}/sources.list.d
cat > "$tmp/deb822/sources.list.d/debian.sources" <<'S'
Types: deb
URIs: http://apt-cache.corp.example:3142/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /etc/keys/corp-debian.gpg
S
echo 'deb [arch=amd64 signed-by=/etc/keys/local.gpg] https://mirror.local.lan/debian bookworm main contrib' \
    > "$tmp/oneline/sources.list"
echo 'deb http://ftp.uni.example/debian/ bookworm main' > "$tmp/oneline-plain/sources.list"
# Only the bookworm suite counts, not a security or other suite listed first.
cat > "$tmp/security-first/sources.list.d/a.sources" <<'S'
Types: deb
URIs: http://security.mirror.example/debian-security
Suites: bookworm-security
Components: main

Types: deb
URIs: http://main.mirror.example/debian
Suites: bookworm
Components: main
S
echo 'deb http://other.example/debian trixie main' > "$tmp/none/sources.list"

expect deb822 http://apt-cache.corp.example:3142/debian /etc/keys/corp-debian.gpg
expect oneline https://mirror.local.lan/debian /etc/keys/local.gpg
expect oneline-plain http://ftp.uni.example/debian/ /usr/share/keyrings/debian-archive-keyring.gpg
expect security-first http://main.mirror.example/debian /usr/share/keyrings/debian-archive-keyring.gpg
if out=$(APT_ETC="$tmp/none" "$here/install-deps.sh" --print-source 2>&1); then
    echo "FAIL none: printed an entry without a bookworm source: $out"
    fails=$((fails + 1))
elif grep -q "no bookworm entry" <<<"$out"; then
    echo "PASS none (refused: $out)"
else
    echo "FAIL none: unexpected refusal: $out"
    fails=$((fails + 1))
fi
[ $fails = 0 ] && echo "test_install_sources: all passed" || { echo "test_install_sources: $fails failed"; exit 1; }
