#!/usr/bin/env bash
# Whose hang is it? The quickstart scenario (tests/rig/quickstart-inner.sh:
# examples/quickstart.toml, the test ISO, 4 vCPUs, OVMF -> GRUB -> Linux ->
# shell -> power-off) N times with our VMM and N times with QEMU as the
# inner VMM, interleaved (who goes first alternates), in the same rig, in
# batches of B rounds per L1 boot. Prints one line per run and a tally:
#
#   stall-hunt: ours: P pass, R rig-fault, S stall, G guest-error, T timeout, E vmm-exit, H vmm-hang, F fail of N
#   stall-hunt: qemu: ...
#
# Usage: tests/rig/stall-hunt.sh [N] [B]   (default 20 rounds, batches of 5)
# Env: VMM (default build/propolis-standalone), QS_IDLE, QS_TIMEOUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-20}
batch=${2:-5}
vmm=${VMM:-build/propolis-standalone}
log=build/rig/stall-hunt-$(date +%Y%m%d-%H%M%S).log
make -s all || exit 1
tests/rig/rig.sh build || exit 1
mkdir -p build/quickstart
tests/rig/rig.sh mkcfg build/quickstart/cfg.img shell
cp build/rig/guest/test.iso build/quickstart/quickstart.iso
qemu_files=()
for f in kvmvapic.bin linuxboot_dma.bin; do
    qemu_files+=(--file "/usr/share/qemu/$f:/usr/share/qemu/$f")
done
echo "stall-hunt: $rounds rounds of ours and QEMU, interleaved, $batch per L1 boot; log $log"
done_rounds=0
while [ $done_rounds -lt "$rounds" ]; do
    n=$(( rounds - done_rounds < batch ? rounds - done_rounds : batch ))
    tests/rig/rig.sh run --vmm "$vmm" --script tests/rig/quickstart-inner.sh --quiet \
        --bin build/ttyexpect --bin /usr/bin/qemu-system-x86_64 \
        --file build/quickstart/quickstart.iso --file build/quickstart/cfg.img \
        --file examples/quickstart.toml --file /usr/share/OVMF/OVMF_CODE.fd "${qemu_files[@]}" \
        --env "QS_VMMS=ours qemu" --env "QS_ROUNDS=$n" --env "QS_QEMU=/rig/bin/qemu-system-x86_64" \
        --env "QS_IDLE=${QS_IDLE:-120}" --env "QS_TIMEOUT=${QS_TIMEOUT:-300}" \
        --timeout $(( n * 2 * ${QS_TIMEOUT:-300} + 120 )) --retries 0 >> "$log" 2>&1
    rc=$?
    logdir=$(ls -td build/rig/runs/*/ | head -1)
    # rounds are numbered per batch in L1; renumber for the tally
    grep -a 'QS-RESULT' "$logdir/console.log" | sed 's/.*QS-RESULT //' \
        | awk -v base=$done_rounds -v logdir="$logdir" \
            '{ sub(/round=[0-9]+/, "round=" base + substr($2, 7)); print $0, "log=" logdir }' \
        | tee -a "$log.results"
    echo "stall-hunt: batch of $n rounds ended with rig status $rc ($(grep -a 'rig: attempt' "$log" | tail -1))"
    done_rounds=$(( done_rounds + n ))
done
for v in ours qemu; do
    awk -v v=$v '$1 == "vmm=" v { split($3, r, "="); c[r[2]]++; n++ }
        END { printf "stall-hunt: %s: %d pass, %d rig-fault, %d stall, %d guest-error, %d timeout, %d vmm-exit, %d vmm-hang, %d fail of %d\n",
              v, c["pass"], c["rig-fault"], c["stall"], c["guest-error"], c["timeout"], c["vmm-exit"], c["vmm-hang"], c["fail"], n }' "$log.results"
    awk -v v=$v '$1 == "vmm=" v && $3 == "result=pass" { split($4, s, "="); print s[2] }' "$log.results" \
        | sort -n | awk -v v=$v '{ a[NR] = $1 } END { if (NR) printf "stall-hunt: %s: passing runs took min %d s, median %d s, max %d s\n", v, a[1], a[int((NR + 1) / 2)], a[NR] }'
done
