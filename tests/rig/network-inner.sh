#!/bin/sh
# Inside L1 (or on a host whose KVM runs real guests): the quickstart VM
# with the spec's NIC section on a TAP that our VMM creates in L1. The
# guest brings eth0 up, pings L1's end, and moves NET_MIB MiB each way over
# HTTP (busybox httpd and wget at both ends), checked with md5sum at both
# ends. One line per check: "NET-RESULT <check> pass|fail [detail]".
# Env: RIG_VMM, RIG_FILES (rig.sh exec); NET_MIB (16).
F=${RIG_FILES:?}
MIB=${NET_MIB:-16}
. rig-lib.sh
mkdir -p net && cd net || exit 1
cp $F/cfg.img cfg.img
sed -e "s|@ISO@|$F/quickstart.iso|" -e "s|@CFG@|$PWD/cfg.img|" \
    -e "s|/usr/share/OVMF/OVMF_CODE.fd|$F/OVMF_CODE.fd|" $F/quickstart.toml > config.toml
cat >> config.toml <<EOF

[dev.net0]
driver = "pci-virtio-viona"
vnic = "qtap0"
pci-path = "0.6.0"
EOF
result() { echo "NET-RESULT $*"; }
rc=0

# L1's side: a file to serve, and a web server on the TAP's address.
mkdir -p www
dd if=/dev/urandom of=www/down.bin bs=1M count=$MIB 2>/dev/null
down_sum=$(md5sum < www/down.bin | cut -d' ' -f1)

$RIG_VMM config.toml > vmm.log 2>&1 &
vmm=$!
i=0
while ! ip link show qtap0 >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -gt 100 ] && break; sleep 0.1
done
ip addr add 10.9.0.1/24 dev qtap0 && ip link set qtap0 up
httpd -p 10.9.0.1:8080 -h www
grep -q "created TAP qtap0" vmm.log && result tap-created pass || { result tap-created fail; rc=1; }

# The guest's side: the same checks the other way round; its upload is a
# file L1 fetches from the guest's own httpd.
RIG_IDLE=120 guest_ttyexpect ttya timeout:300 "expect:RIG-SHELL ready" "fail:BdsDxe" "send:\r" "expect:#" \
    "send:ip link set eth0 up && ip addr add 10.9.0.2/24 dev eth0 && sleep 2 && ping -c 3 -W 5 10.9.0.1 > /tmp/ping.txt; echo PING-RC=\$?\r" \
    "expect:PING-RC=" "expect:#" \
    "send:wget -q -O - http://10.9.0.1:8080/down.bin | md5sum; echo DOWN''DONE\r" \
    "expect:DOWNDONE" "expect:#" \
    "send:mkdir -p /tmp/www && dd if=/dev/urandom of=/tmp/www/up.bin bs=1M count=$MIB 2>/dev/null && md5sum < /tmp/www/up.bin && httpd -p 10.9.0.2:8080 -h /tmp/www; echo UP''READY\r" \
    "expect:UPREADY" "expect:#" > console.raw 2>tty.err
tty_rc=$?
tr -d '\r' < console.raw > console.log
if [ $tty_rc = 0 ]; then
    # L1 fetches the guest's file while the guest waits at its prompt.
    up_sum=$(wget -q -O - http://10.9.0.2:8080/up.bin | md5sum | cut -d' ' -f1)
    guest_ttyexpect ttya timeout:60 "send:poweroff -f\r" eof >> console.raw 2>>tty.err
fi
grep -q "PING-RC=0" console.log && result ping pass || { result ping fail; rc=1; }
# The guest printed md5sum's line ("<sum>  -") after the wget.
grep -q "^$down_sum  -" console.log && result download pass "$MIB MiB md5 $down_sum" ||
    { result download fail "want $down_sum"; rc=1; }
# ... and the upload's after the dd: the last such line.
guest_up=$(grep -o '^[0-9a-f]\{32\}  -' console.log | tail -1 | cut -c1-32)
[ -n "${up_sum:-}" ] && [ "$up_sum" = "$guest_up" ] && result upload pass "$MIB MiB md5 $up_sum" ||
    { result upload fail "guest $guest_up, L1 got ${up_sum:-nothing}"; rc=1; }
if vmm_wait_gone $vmm 30; then
    wait $vmm; st=$?
    [ $st = 0 ] && result vmm-exit pass || { result vmm-exit fail "status $st"; rc=1; }
else
    result vmm-exit fail "VMM still running"; vmm_stop $vmm; rc=1
fi
[ $rc = 0 ] || { echo "== console"; cat console.log; cat tty.err; echo "== vmm.log"; tail -40 vmm.log; }
exit $rc
