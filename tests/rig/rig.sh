#!/bin/bash
# The nested rig: runs real guests (OVMF, SeaBIOS, stock Linux) under a real
# /dev/kvm inside a software-emulated AMD machine ("L1", QEMU TCG with SVM).
# See tests/rig/README.md.  Subcommands:
#
#   rig.sh build                       build everything once (cached in build/rig)
#   rig.sh run --vmm BIN --script S [--file F[:DEST]]... [--bin B]... [--timeout S]
#                                      run script S as root inside L1
#   rig.sh exec ...                    like run, or directly on the host when
#                                      host KVM runs real guests (see probe)
#   rig.sh probe                       print "direct" or "rig" (RIG_MODE overrides)
#   rig.sh check [N]                   reliability loop over the reference scenario
#   rig.sh reference [--timeout S]     one run of the reference scenario
#   rig.sh mkcfg OUT.img LINE...       write a guest config disk (actions)
set -euo pipefail

RIG_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(cd "$RIG_SRC/../.." && pwd)
OUT=${RIG_BUILD:-$TOP/build/rig}
# Built outer QEMUs, shared by the checkouts of this machine (RIG_CACHE overrides).
OUTER_CACHE=${RIG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/propolis-standalone-rig}

say() { echo "rig: $*" >&2; }
die() { echo "rig: FAILED: $*" >&2; exit 1; }

# stale NAME INPUT... : true when the stamp of NAME does not match the
# contents of the inputs (files, or literal strings prefixed with '=').
inputs_hash() {
    local i
    for i in "$@"; do
        case $i in
            =*) printf '%s\n' "$i" ;;
            *) sha256sum "$i" ;;
        esac
    done | sha256sum | cut -d' ' -f1
}
stale() {
    local name=$1; shift
    [ "$(cat "$OUT/stamps/$name" 2>/dev/null)" != "$(inputs_hash "$@")" ]
}
stamp() {
    local name=$1; shift
    mkdir -p "$OUT/stamps"
    inputs_hash "$@" > "$OUT/stamps/$name"
}

# ---------------------------------------------------------------- packages
build_deps() {
    if [ "$(id -u)" = 0 ]; then
        "$RIG_SRC/install-deps.sh" || die "step deps: tests/rig/install-deps.sh failed"
    fi
    local t
    for t in busybox cpio depmod modprobe grub-mkrescue xorriso mformat gcc ninja meson; do
        PATH=$PATH:/usr/sbin:/sbin command -v "$t" >/dev/null \
            || die "step deps: '$t' not found; run tests/rig/install-deps.sh as root"
    done
    [ -f /usr/share/ovmf/OVMF.fd ] || die "step deps: /usr/share/ovmf/OVMF.fd missing (package ovmf)"
    [ -f /usr/share/seabios/bios-256k.bin ] || die "step deps: seabios missing (package seabios)"
    [ -x /usr/bin/qemu-system-x86_64 ] || die "step deps: qemu-system-x86_64 missing (package qemu-system-x86)"
    if ldd "$(command -v busybox)" >/dev/null 2>&1; then
        die "step deps: busybox is not static (install busybox-static)"
    fi
    return 0
}

# ------------------------------------------------------ outer QEMU (patched)
# Debian's QEMU (7.2, and 10.0.2 in bookworm-backports) aborts in nested SVM
# runs (tcg_handle_interrupt: assertion failed: (bql_locked())): we build
# bookworm-backports' 10.0.2 with tests/rig/qemu-cr8-bql.patch.
# RIG_OUTER_QEMU=/path/to/qemu-system-x86_64 uses another binary instead.
# outer_key PATCH VERSION: names a built outer QEMU in the machine's cache
# (the patch's contents, not its path: any checkout may share it).
outer_key() { { cat "$1"; echo "$2"; } | sha256sum | cut -c1-32; }

build_outer() {
    if [ -n "${RIG_OUTER_QEMU:-}" ]; then
        [ -x "$RIG_OUTER_QEMU" ] || die "step outer-qemu: RIG_OUTER_QEMU=$RIG_OUTER_QEMU is not executable"
        return 0
    fi
    local bin=$OUT/outer/qemu-system-x86_64 patch=$RIG_SRC/qemu-cr8-bql.patch src=$OUT/src
    if [ -x "$bin" ] && ! stale outer "$patch" "=$(cat "$OUT/outer/version" 2>/dev/null)"; then
        return 0
    fi
    # Another checkout on this machine may have built it already: binaries
    # are kept per (patch, QEMU version) in the machine's cache.
    local avail
    avail=$(apt-cache showsrc qemu 2>/dev/null | sed -n 's/^Version: \([0-9]*:\)\{0,1\}\([0-9.]*\).*/\2/p' | sort -V | tail -1)
    if [ -n "$avail" ] && [ -x "$OUTER_CACHE/qemu-$(outer_key "$patch" "$avail")" ]; then
        mkdir -p "$OUT/outer"
        cp "$OUTER_CACHE/qemu-$(outer_key "$patch" "$avail")" "$bin.tmp"
        mv "$bin.tmp" "$bin"
        echo "$avail" > "$OUT/outer/version"
        stamp outer "$patch" "=$avail"
        say "step outer-qemu: QEMU $avail with $(basename "$patch") from $OUTER_CACHE"
        return 0
    fi
    mkdir -p "$src"
    local tarball
    tarball=$(ls "$src"/qemu_*.orig.tar.* 2>/dev/null | head -1 || true)
    if [ -z "$tarball" ]; then
        say "step outer-qemu: apt-get source qemu/bookworm-backports"
        # the .dsc/.debian.tar may be gone from the mirror; the orig tarball is enough
        (cd "$src" && apt-get source --download-only "qemu/bookworm-backports" >apt-source.log 2>&1) || true
        tarball=$(ls "$src"/qemu_*.orig.tar.* 2>/dev/null | head -1 || true)
        [ -n "$tarball" ] || die "step outer-qemu: apt-get source qemu/bookworm-backports gave no orig tarball (deb-src for bookworm-backports missing? see $src/apt-source.log)"
    fi
    local ver
    ver=$(basename "$tarball" | sed -n 's/^qemu_\([0-9.]*\).*/\1/p')
    say "step outer-qemu: building QEMU $ver with $(basename "$patch") (about 3-4 min on 2 cores)"
    local bd=$OUT/outer-build   # the binary in use stays until the new one is renamed over it
    rm -rf "$src/qemu-$ver" "$bd"
    tar -C "$src" -xf "$tarball" || die "step outer-qemu: cannot unpack $tarball"
    [ -d "$src/qemu-$ver" ] || die "step outer-qemu: $tarball has no qemu-$ver/"
    patch -d "$src/qemu-$ver" -p1 -s < "$patch" || die "step outer-qemu: $patch does not apply to QEMU $ver"
    mkdir -p "$bd" "$OUT/outer"
    (
        cd "$bd"
        "$src/qemu-$ver/configure" --python=/usr/bin/python3 --disable-download \
            --target-list=x86_64-softmmu --without-default-features --enable-tcg \
            --enable-fdt=system --disable-docs --disable-tools --disable-guest-agent \
            --disable-install-blobs >configure.log 2>&1 \
            || { tail -20 configure.log >&2; exit 1; }
        ninja qemu-system-x86_64 >ninja.log 2>&1 || { tail -30 ninja.log >&2; exit 1; }
    ) || die "step outer-qemu: build failed (logs in $bd)"
    cp "$bd/qemu-system-x86_64" "$bin.tmp"
    mv "$bin.tmp" "$bin"
    echo "$ver" > "$OUT/outer/version"
    rm -rf "$src/qemu-$ver" "$bd"
    stamp outer "$patch" "=$ver"
    if mkdir -p "$OUTER_CACHE" 2>/dev/null; then
        local key
        key=$(outer_key "$patch" "$ver")
        cp "$bin" "$OUTER_CACHE/qemu-$key.tmp.$$" && mv "$OUTER_CACHE/qemu-$key.tmp.$$" "$OUTER_CACHE/qemu-$key"
    fi
}
outer_qemu() { echo "${RIG_OUTER_QEMU:-$OUT/outer/qemu-system-x86_64}"; }

# --------------------------------------------------- kernel (never installed)
# Debian's current bookworm kernel, fetched with apt-get download and unpacked
# with dpkg -x; RIG_KERNEL_PKG=linux-image-X-amd64 picks another one.
build_kernel() {
    local kd=$OUT/kernel
    if [ -f "$kd/version" ] && [ -f "$kd/vmlinuz" ] && [ -z "${RIG_KERNEL_PKG:-}" -o "$(cat "$kd/package" 2>/dev/null)" = "${RIG_KERNEL_PKG:-}" ]; then
        return 0
    fi
    say "step kernel: fetching Debian's kernel"
    local final=$kd
    kd=$OUT/kernel.new
    rm -rf "$kd"; mkdir -p "$kd/debs"
    local pkg=${RIG_KERNEL_PKG:-}
    if [ -z "$pkg" ]; then
        (cd "$kd/debs" && apt-get download linux-image-amd64 >/dev/null 2>&1) \
            || die "step kernel: apt-get download linux-image-amd64 failed (apt-get update?)"
        pkg=$(dpkg-deb -f "$kd"/debs/linux-image-amd64_*.deb Depends | sed -n 's/^\(linux-image-[^ ,]*\).*/\1/p')
        [ -n "$pkg" ] || die "step kernel: cannot tell which kernel linux-image-amd64 depends on"
    fi
    (cd "$kd/debs" && apt-get download "$pkg" >/dev/null 2>&1) || die "step kernel: apt-get download $pkg failed"
    dpkg -x "$kd"/debs/"$pkg"_*.deb "$kd/root" || die "step kernel: dpkg -x $pkg failed"
    local ver
    ver=$(ls "$kd/root/lib/modules" | head -1)
    [ -n "$ver" ] && [ -f "$kd/root/boot/vmlinuz-$ver" ] || die "step kernel: $pkg has no vmlinuz/modules"
    depmod -b "$kd/root" "$ver" || die "step kernel: depmod failed"
    cp "$kd/root/boot/vmlinuz-$ver" "$kd/vmlinuz"
    rm -rf "$kd/debs"
    echo "$pkg" > "$kd/package"
    echo "$ver" > "$kd/version"
    rm -rf "$final.old"
    [ -d "$final" ] && mv "$final" "$final.old"
    mv "$kd" "$final"
    rm -rf "$final.old"
}

# L1 boots the kernel's uncompressed ELF image through its PVH entry point:
# decompressing vmlinuz on the software CPU costs seconds at every boot.
build_vmlinux() {
    local kd=$OUT/kernel off
    if [ -f "$kd/vmlinux" ] && ! stale vmlinux "$kd/vmlinuz"; then return 0; fi
    rm -f "$kd/vmlinux"
    for off in $(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$kd/vmlinuz" | cut -d: -f1); do
        tail -c +$((off + 1)) "$kd/vmlinuz" | xz -dc 2>/dev/null > "$kd/vmlinux.tmp" || true
        if [ "$(head -c 4 "$kd/vmlinux.tmp" | od -An -c | tr -d ' ')" = '177ELF' ]; then
            mv "$kd/vmlinux.tmp" "$kd/vmlinux"
            break
        fi
    done
    rm -f "$kd/vmlinux.tmp"
    if [ -f "$kd/vmlinux" ]; then
        stamp vmlinux "$kd/vmlinuz"
    else
        say "step kernel: no xz-compressed ELF in vmlinuz; L1 boots vmlinuz (slower)"
    fi
}

# bundle_modules ROOT MODULE... : copy the modules and their dependencies into
# ROOT/lib/modules/rig and list them in load order in ROOT/etc/rig/modules.
bundle_modules() {
    local root=$1; shift
    local kd=$OUT/kernel ver m line ko
    ver=$(cat "$kd/version")
    mkdir -p "$root/lib/modules/rig" "$root/etc/rig"
    : > "$root/etc/rig/modules"
    for m in "$@"; do
        modprobe -d "$kd/root" -S "$ver" --show-depends "${m%% *}" > "$OUT/tmp.deps" 2>&1 \
            || die "step modules: module ${m%% *} not in kernel $ver: $(cat "$OUT/tmp.deps")"
        while read -r line; do
            case $line in
                insmod\ *) ko=$(echo "$line" | awk '{print $2}') ;;
                *) continue ;;
            esac
            case $ko in *.ko) ;; *) die "step modules: $ko is compressed; busybox insmod needs .ko" ;; esac
            if [ ! -f "$root/lib/modules/rig/$(basename "$ko")" ]; then
                cp "$ko" "$root/lib/modules/rig/"
                if [ "$(basename "$ko" .ko | tr - _)" = "$(echo "${m%% *}" | tr - _)" ]; then
                    echo "$(basename "$ko") ${m#"${m%% *}"}" >> "$root/etc/rig/modules"
                else
                    basename "$ko" >> "$root/etc/rig/modules"
                fi
            fi
        done < "$OUT/tmp.deps"
    done
    rm -f "$OUT/tmp.deps"
}

# cpio_of DIR OUT : uncompressed newc archive of DIR, owned by root
cpio_of() { (cd "$1" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) > "$2"; }

# ------------------------------------------------------------- L1 initramfs
# "name args": args go to that module's insmod.  halt_poll_ns=0: an idle L1
# vCPU must not spin (every spin is emulated, and steals a host core).
L1_MODULES=("kvm halt_poll_ns=0" kvm_amd virtio_pci virtio_blk tun vhost_vsock vhost_net)
build_l1() {
    local kd=$OUT/kernel
    if [ -f "$OUT/l1-base.cpio" ] && ! stale l1 "$RIG_SRC/l1-init.sh" "$kd/version" "=${L1_MODULES[*]}"; then
        return 0
    fi
    say "step l1-initramfs: building"
    local r=$OUT/l1-root
    rm -rf "$r"; mkdir -p "$r/bin" "$r/etc/rig" "$r/rig/bin" "$r/rig/files"
    # (everything readers use is renamed into place: runs may be going on)
    cp "$(command -v busybox)" "$r/bin/busybox"
    ln -s busybox "$r/bin/sh"
    install -m 755 "$RIG_SRC/l1-init.sh" "$r/init"
    bundle_modules "$r" "${L1_MODULES[@]}"
    cpio_of "$r" "$OUT/l1-base.cpio.tmp"
    mv "$OUT/l1-base.cpio.tmp" "$OUT/l1-base.cpio"
    stamp l1 "$RIG_SRC/l1-init.sh" "$kd/version" "=${L1_MODULES[*]}"
}

# -------------------------------------------------------------- guest ISO
GUEST_MODULES=(virtio_pci virtio_blk virtio_net nvme vmw_vsock_virtio_transport pvpanic-mmio vfat
               nls_cp437 nls_ascii nls_iso8859-1 nls_utf8)
GUEST_CMDLINE="console=ttyS0,115200 quiet loglevel=3 mitigations=off panic=-1"
build_guest() {
    local kd=$OUT/kernel g=$OUT/guest
    local inputs=("$RIG_SRC/guest-init.sh" "$RIG_SRC/udhcpc.sh" "$RIG_SRC/rig-vsock.c" "$kd/version"
                  "=${GUEST_MODULES[*]}" "=$GUEST_CMDLINE")
    if [ -f "$g/test.iso" ] && [ -f "$OUT/rig-vsock" ] && ! stale guest "${inputs[@]}"; then
        return 0
    fi
    say "step guest-iso: building"
    local final=$g
    g=$OUT/guest.new   # built aside; the products are renamed into place (runs may be going on)
    rm -rf "$g"; mkdir -p "$g/root/bin" "$g/root/etc/rig" "$g/iso/boot/grub" "$final"
    cp "$(command -v busybox)" "$g/root/bin/busybox"
    ln -s busybox "$g/root/bin/sh"
    install -m 755 "$RIG_SRC/guest-init.sh" "$g/root/init"
    install -m 755 "$RIG_SRC/udhcpc.sh" "$g/root/etc/rig/udhcpc.sh"
    gcc -static -O2 -Wall -Werror -o "$g/root/bin/rig-vsock" "$RIG_SRC/rig-vsock.c" \
        || die "step guest-iso: cannot build rig-vsock (static glibc: libc6-dev)"
    cp "$g/root/bin/rig-vsock" "$OUT/rig-vsock.tmp"   # the host end, for tests: --bin build/rig/rig-vsock
    mv "$OUT/rig-vsock.tmp" "$OUT/rig-vsock"
    bundle_modules "$g/root" "${GUEST_MODULES[@]}"
    cpio_of "$g/root" "$g/initrd.cpio"
    gzip -9 -n < "$g/initrd.cpio" > "$g/iso/boot/initrd.gz"
    cp "$kd/vmlinuz" "$g/iso/boot/vmlinuz"
    cat > "$g/iso/boot/grub/grub.cfg" <<CFG
set timeout=0
set default=0
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
echo "RIG-GRUB loading"
menuentry "rig test guest" {
    linux /boot/vmlinuz $GUEST_CMDLINE
    initrd /boot/initrd.gz
}
CFG
    grub-mkrescue -o "$g/test.iso.tmp" "$g/iso" -- -volid RIGTEST >"$g/grub-mkrescue.log" 2>&1 \
        || die "step guest-iso: grub-mkrescue failed (grub-pc-bin, grub-efi-amd64-bin, xorriso, mtools?): $(tail -3 "$g/grub-mkrescue.log")"
    cp "$kd/vmlinuz" "$g/vmlinuz"           # for -kernel boots without firmware
    gzip -9 -n < "$g/initrd.cpio" > "$g/initrd.gz"
    rm -f "$g/initrd.cpio"
    local f
    for f in vmlinuz initrd.gz grub-mkrescue.log; do mv -f "$g/$f" "$final/$f"; done
    mv -f "$g/test.iso.tmp" "$final/test.iso"
    rm -rf "$final/root" "$final/iso"
    mv "$g/root" "$g/iso" "$final/"
    rm -rf "$g"
    stamp guest "${inputs[@]}"
}

# ------------------------------------------------------ guest ISO with fio
# The same guest plus Debian's fio and every library ldd names (ceph,
# gluster, ICU...: 84 MB, 26 MB as zstd), as a second initramfs archive
# after the first: test-fio.iso (GRUB loads both) and initrd-fio.img (both
# concatenated, for -kernel boots). A separate product, so the other tests'
# guests do not load 26 MB more on every boot of the software CPU.
fio_files() { # the binary, its libraries and the ELF interpreter, resolved
    echo /usr/bin/fio
    ldd /usr/bin/fio | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'
}
build_guest_fio() {
    local g=$OUT/guest f lib
    [ -x /usr/bin/fio ] || die "step guest-fio: /usr/bin/fio missing (package fio; tests/rig/install-deps.sh)"
    command -v zstd >/dev/null || die "step guest-fio: zstd missing (package zstd)"
    if ldd /usr/bin/fio | grep -q 'not found'; then
        die "step guest-fio: ldd cannot resolve fio's libraries: $(ldd /usr/bin/fio | grep 'not found' | head -3)"
    fi
    # (the base guest's stamp, and each file's name, size and time: hashing
    # 84 MB on every cached build would cost seconds on a loaded host)
    local inputs=("$OUT/stamps/guest")
    while read -r f; do inputs+=("=$(stat -L -c '%n %s %Y' "$f")"); done < <(fio_files)
    if [ -f "$g/test-fio.iso" ] && [ -f "$g/initrd-fio.img" ] && ! stale guest-fio "${inputs[@]}"; then
        return 0
    fi
    say "step guest-fio: building"
    local w=$OUT/guest-fio.new
    rm -rf "$w"; mkdir -p "$w/root" "$w/iso"
    while read -r f; do     # each at the path ld.so and ldd name (symlinks resolved)
        mkdir -p "$w/root$(dirname "$f")"
        cp -L "$f" "$w/root$f"
    done < <(fio_files)
    # /lib64 and /lib/x86_64-linux-gnu are real directories here: the base
    # initramfs has neither, and the kernel merges the archives' trees.
    cpio_of "$w/root" "$w/fio.cpio"
    zstd -q -19 -T0 < "$w/fio.cpio" > "$w/fio.cpio.zst"
    cat "$g/initrd.gz" "$w/fio.cpio.zst" > "$w/initrd-fio.img"
    # The base ISO's tree with one more initrd file on GRUB's initrd line.
    cp -r "$g/iso/." "$w/iso/"
    cp "$g/initrd.gz" "$w/iso/boot/initrd.gz"
    cp "$w/fio.cpio.zst" "$w/iso/boot/fio.zst"
    sed -i 's|^\( *initrd /boot/initrd.gz\)$|\1 /boot/fio.zst|' "$w/iso/boot/grub/grub.cfg"
    grep -q 'initrd /boot/initrd.gz /boot/fio.zst' "$w/iso/boot/grub/grub.cfg" \
        || die "step guest-fio: unexpected grub.cfg in $g/iso"
    grub-mkrescue -o "$w/test-fio.iso" "$w/iso" -- -volid RIGTEST >"$w/grub-mkrescue.log" 2>&1 \
        || die "step guest-fio: grub-mkrescue failed: $(tail -3 "$w/grub-mkrescue.log")"
    mv -f "$w/initrd-fio.img" "$g/initrd-fio.img"
    mv -f "$w/test-fio.iso" "$g/test-fio.iso"
    rm -rf "$w"
    stamp guest-fio "${inputs[@]}"
}

# ------------------------------------------------------------------- probe
build_probe() {
    if [ -f "$OUT/probe.bin" ] && ! stale probe "$RIG_SRC/probe.S"; then return 0; fi
    mkdir -p "$OUT"   # the probe may run before the first build
    as --32 -o "$OUT/probe.o.$$" "$RIG_SRC/probe.S" && objcopy -O binary "$OUT/probe.o.$$" "$OUT/probe.bin.$$" \
        || die "step probe: cannot assemble tests/rig/probe.S"
    mv "$OUT/probe.bin.$$" "$OUT/probe.bin"
    rm -f "$OUT/probe.o.$$"
    stamp probe "$RIG_SRC/probe.S"
}

build_all() {
    local t0=$SECONDS
    mkdir -p "$OUT"
    exec 9>"$OUT/.build.lock"
    flock 9 || die "step build: cannot lock $OUT/.build.lock"
    build_deps
    build_outer
    build_kernel
    build_vmlinux
    build_l1
    build_guest
    build_guest_fio
    build_probe
    say "build: done in $((SECONDS - t0)) s (cached in ${OUT#$TOP/})"
}

# -------------------------------------------------------------- probe mode
# Prints "direct" when host KVM runs unmodified guests (a bootrom executing
# x87 math at CPL0 gets through), else "rig".  RIG_MODE=direct|rig|auto.
probe_mode() {
    local mode=${RIG_MODE:-auto} why
    case $mode in
        direct|rig|off) why="RIG_MODE=$mode" ;;
        auto)
            mode=rig
            if [ ! -w /dev/kvm ]; then
                why="no usable /dev/kvm"
            else
                build_probe
                local d
                d=$(mktemp -d)
                timeout -k 2 10 qemu-system-x86_64 -enable-kvm -m 16 -bios "$OUT/probe.bin" \
                    -display none -nodefaults -no-reboot -debugcon "file:$d/port" -global isa-debugcon.iobase=0x402 >"$d/err" 2>&1 &
                local pid=$! i
                for i in $(seq 50); do
                    grep -q K "$d/port" 2>/dev/null && break
                    grep -q -i "internal error\|emulation failure" "$d/err" && break
                    kill -0 $pid 2>/dev/null || break
                    sleep 0.2
                done
                kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true
                if grep -q K "$d/port" 2>/dev/null; then
                    mode=direct why="probe: x87 at CPL0 runs under host KVM"
                elif grep -q S "$d/port" 2>/dev/null; then
                    why="probe: host KVM cannot run x87 at CPL0 ($(grep -m1 -i 'error\|failure' "$d/err" || echo no answer))"
                else
                    why="probe: host KVM did not run the probe ($(head -1 "$d/err"))"
                fi
                rm -rf "$d"
            fi ;;
        *) die "RIG_MODE must be direct, rig, off or auto (is '$mode')" ;;
    esac
    say "real-guest tests: $mode ($why)"
    echo "$mode"
}

# ---------------------------------------------------------- config disk
# mkcfg OUT.img LINE... : a 1 MiB disk whose first sector starts "RIGCFG1\n"
mkcfg() {
    local img=${1:?usage: rig.sh mkcfg OUT.img LINE...}; shift
    { printf 'RIGCFG1\n'; printf '%s\n' "$@"; printf 'end\n'; } > "$img"
    [ "$(stat -c %s "$img")" -le 65536 ] || die "mkcfg: config larger than 64 KiB"
    truncate -s 1M "$img"
}

main() {
    local cmd=${1:-}; shift || true
    case $cmd in
        build) build_all ;;
        build-outer) build_deps; build_outer ;;
        build-images) mkdir -p "$OUT"; build_kernel; build_l1; build_guest; build_guest_fio; build_probe ;;
        run|check|reference)
            ( build_all ) || exit 126
            exec python3 "$RIG_SRC/rig.py" "$cmd" "$@" ;;
        probe) probe_mode ;;
        exec)   # run, directly or in the rig, as probe_mode decides
            case $(probe_mode) in
                direct) ( mkdir -p "$OUT"; build_deps; build_kernel; build_guest; build_guest_fio ) || exit 126
                        exec python3 "$RIG_SRC/rig.py" direct "$@" ;;
                rig) ( build_all ) || exit 126
                     exec python3 "$RIG_SRC/rig.py" run "$@" ;;
                *) die "exec: RIG_MODE=off" ;;
            esac ;;
        mkcfg) mkcfg "$@" ;;
        *) die "usage: rig.sh build|run|probe|check|reference|mkcfg (see tests/rig/README.md)" ;;
    esac
}
main "$@"
