#!/bin/bash
# Issue 16's real-guest crucible test (crucible-inner.sh): Linux on a
# virtio-blk and an encrypted NVMe disk (over TLS), each on three test
# downstairs,
# booted three times with generation = "auto"; filesystems and files
# checksummed across the boots, a downstairs killed and restarted while
# files are written, the three copies compared, no plaintext on the
# encrypted downstairs.
# Runs in the nested rig, or directly on a host whose KVM runs real guests
# (rig.sh exec decides).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/rig/rig-lib.sh
rig_test_setup
make -s BUILD="$BUILD" "$BUILD/crucible-ds"
tests/rig/rig.sh mkcfg "$work/cfg.img" shell
# TLS certificates for the NVMe disk's downstairs (downstairsN) and the
# upstairs, under one root.
mkdir "$work/tls"
(
    cd "$work/tls"
    k=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    openssl req -x509 "${k[@]}" -keyout root.key -out root.pem -days 2 -subj /CN=test-root 2>/dev/null
    for n in downstairs0 downstairs1 downstairs2 upstairs; do
        openssl req "${k[@]}" -keyout $n.key -out $n.csr -subj /CN=$n 2>/dev/null
        printf 'subjectAltName=DNS:%s\n' $n > $n.ext
        openssl x509 -req -in $n.csr -CA root.pem -CAkey root.key -CAcreateserial -out $n.pem \
            -days 2 -extfile $n.ext 2>/dev/null
    done
)
exec tests/rig/rig.sh exec --vmm "$VMM" --script tests/rig/crucible-inner.sh \
    --bin "$BUILD/ttyexpect" --bin "$BUILD/crucible-ds" --file "$B/guest/test.iso" \
    --file "$work/cfg.img" --file "$work/tls" --file /usr/share/seabios/bios-256k.bin \
    --env "CRU_FIRMWARE=${CRU_FIRMWARE:-bios-256k.bin}" --timeout 1500 "$@"
