#!/bin/bash
# Installs (idempotently) the Debian packages the nested test rig needs.
# Called by .ci/run and by `tests/rig/rig.sh build`.  Root only.
#
#   outer machine:   qemu-system-x86 (Debian's; a patched build is made from
#                    bookworm-backports' qemu source when it has the CR8/BQL
#                    defect), ovmf, seabios
#   images:          busybox-static, cpio, grub-efi-amd64-bin, grub-pc-bin,
#                    grub-common, xorriso, mtools, dosfstools, xz-utils, kmod
#   patched QEMU:    meson (bookworm-backports), ninja-build, libfdt-dev,
#                    libglib2.0-dev, libpixman-1-dev, python3-pycotap,
#                    pkg-config, gcc, libc6-dev (static rig-vsock), binutils,
#                    make, patch, dpkg-dev
#   sources:         adds bookworm-backports (deb + deb-src) from the mirror
#                    this system's own apt sources use for bookworm
#
# `install-deps.sh --print-source` prints the backports entry it would write
# and changes nothing; APT_ETC (default /etc/apt) names the apt directory to
# read (tests/rig/test_install_sources.sh uses both).
set -euo pipefail

step() { echo "rig install-deps: $*" >&2; }
die() { echo "rig install-deps: FAILED: $*" >&2; exit 1; }

APT_ETC=${APT_ETC:-/etc/apt}
print_only=0
[ "${1:-}" = --print-source ] && print_only=1
[ $print_only = 1 ] || [ "$(id -u)" = 0 ] || die "must run as root (apt-get install)"
t0=$SECONDS

PKGS=(qemu-system-x86 ovmf seabios busybox-static cpio
      grub-efi-amd64-bin grub-pc-bin grub-common xorriso mtools dosfstools
      xz-utils kmod ninja-build libfdt-dev libglib2.0-dev libpixman-1-dev
      python3-pycotap pkg-config gcc libc6-dev binutils make patch dpkg-dev fio zstd)
BP_PKGS=(meson)

SRC=$APT_ETC/sources.list.d/rig-backports.sources

# The URI (and keyring, if named) of the system's own bookworm entry: deb822
# .sources files first, then one-line sources.list entries.
bookworm_source() {
    local f
    for f in "$APT_ETC"/sources.list.d/*.sources; do
        [ -f "$f" ] && [ "$f" != "$SRC" ] || continue
        awk 'function flush() { if (uri != "" && suite) { print uri, key; found = 1; exit } uri = ""; key = ""; suite = 0 }
             /^[[:space:]]*$/ { flush(); next }
             /^URIs:/ { uri = $2 }
             /^Signed-By:/ { key = $2 }
             /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm") suite = 1 }
             END { if (!found) flush() }' "$f" | head -1
    done
    for f in "$APT_ETC"/sources.list "$APT_ETC"/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        # "deb [opts] URI bookworm ...": the URI, and signed-by= from the options.
        sed -n -E 's/^deb[[:space:]]+(\[([^]]*)\][[:space:]]+)?([^[:space:]]+)[[:space:]]+bookworm[[:space:]].*/\3 \2/p' "$f" |
            while read -r uri opts; do
                key=$(printf '%s\n' "$opts" | tr ' ' '\n' | sed -n 's/^signed-by=//p' | head -1)
                echo "$uri $key"
            done
    done
}
read -r mirror keyring < <(bookworm_source | head -1) || true
[ -n "${mirror:-}" ] || die "no bookworm entry in this system's apt sources to take the mirror from"
want_src="Types: deb deb-src
URIs: $mirror
Suites: bookworm-backports
Components: main
Signed-By: ${keyring:-/usr/share/keyrings/debian-archive-keyring.gpg}"
if [ $print_only = 1 ]; then
    printf '%s\n' "$want_src"
    exit 0
fi

need_update=0
if [ ! -f "$SRC" ] || [ "$(cat "$SRC")" != "$want_src" ]; then
    step "adding bookworm-backports (deb, deb-src) in $SRC"
    printf '%s\n' "$want_src" > "$SRC"
    need_update=1
fi

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
meson_ok=0
if command -v meson >/dev/null; then
    v=$(meson --version 2>/dev/null || echo 0)
    [ "$(printf '%s\n1.5.0\n' "$v" | sort -V | head -1)" = 1.5.0 ] && meson_ok=1
fi
# the deb-src index must exist for `apt-get source`
ls /var/lib/apt/lists/*bookworm-backports_main_source_Sources* >/dev/null 2>&1 || need_update=1

if [ ${#missing[@]} = 0 ] && [ $meson_ok = 1 ] && [ $need_update = 0 ]; then
    step "all packages present"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
step "apt-get update"
apt-get update -q >/dev/null || die "apt-get update failed"
if [ ${#missing[@]} != 0 ]; then
    step "apt-get install ${missing[*]}"
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
fi
if [ $meson_ok = 0 ]; then
    step "apt-get install -t bookworm-backports ${BP_PKGS[*]}"
    apt-get install -y -q --no-install-recommends -t bookworm-backports "${BP_PKGS[@]}" >/dev/null \
        || die "apt-get install -t bookworm-backports ${BP_PKGS[*]} failed"
fi
step "done in $((SECONDS - t0)) s"
