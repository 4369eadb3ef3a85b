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
#   sources:         adds bookworm-backports (deb + deb-src) from deb.debian.org
set -euo pipefail

step() { echo "rig install-deps: $*" >&2; }
die() { echo "rig install-deps: FAILED: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (apt-get install)"
t0=$SECONDS

PKGS=(qemu-system-x86 ovmf seabios busybox-static cpio
      grub-efi-amd64-bin grub-pc-bin grub-common xorriso mtools dosfstools
      xz-utils kmod ninja-build libfdt-dev libglib2.0-dev libpixman-1-dev
      python3-pycotap pkg-config gcc libc6-dev binutils make patch dpkg-dev)
BP_PKGS=(meson)

SRC=/etc/apt/sources.list.d/rig-backports.sources
want_src='Types: deb deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg'

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
