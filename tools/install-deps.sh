#!/usr/bin/env bash
# Installs the Debian packages that building, testing and running need.
# Idempotent: apt-get only runs when something is missing.
set -euo pipefail
packages=(
    build-essential make gcc binutils    # compiler, assembler, linker (the test guest too)
    libcmocka-dev                         # unit tests
    liburing-dev                          # io_uring block back end
    libjansson-dev                        # JSON in snapshots
    acpica-tools                          # iasl checks the generated ACPI tables
    python3                               # test drivers
    socat                                 # attaching a terminal to ./ttya
    qemu-system-x86                       # baseline VMM for benchmarks and guest checks
    seabios ovmf                          # real firmware for the tests
    dosfstools mtools util-linux          # fsck.fat, mdir/mtype, blkid check the cloud-init disk
    libseccomp-dev                        # per-thread-class syscall filters
    libnbd-dev                            # type = "nbd" disks (libnbd0, loaded on demand)
    libgcrypt20-dev libxxhash-dev         # crucible: AES-256-GCM-SIV and the block hash (static)
    libssl-dev openssl                    # crucible: TLS to the downstairs (libssl3, loaded on demand); test certificates
    nbdkit qemu-utils                     # NBD servers for the nbd tests (nbdkit, qemu-nbd)
    clang libclang-rt-dev                 # libFuzzer targets (make fuzz)
    clang-format
)
missing=()
# npm fetches the TOML conformance fixtures; keep a Node.js that is already there.
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    echo "install-deps: all packages present"
fi
