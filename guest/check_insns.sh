#!/bin/sh
# Reject instructions this host's CPL0 emulator (kvm_pvm) cannot execute
# (see /work/shared/design/testing.md section 1).
# Usage: check_insns.sh OBJDUMP ELF
# Each code section is disassembled in its own mode. Bytes after a label
# whose name ends in "_data" (data embedded in a code section) are skipped
# up to the next label.
set -eu
OBJDUMP=$1
ELF=$2
"$OBJDUMP" -h "$ELF" >/dev/null || exit 1

# Mnemonics (after prefixes). x87 is everything starting with "f" except fninit.
BAD_MNEMONIC='^(int|int1|int3|into|icebp|ud1|lar|lsl|verr|verw|andn|bextr|blsi|blsr|blsmsk|bzhi|pdep|pext|shlx|shrx|sarx|rorx|mulx|adcx|adox|popcnt|lzcnt|tzcnt|crc32[bwlq]?|movbe|rdpid|rdtscp|stac|clac|invpcid|clwb|clflushopt|monitor|mwait|monitorx|mwaitx|vmcall|vmmcall|vmfunc|vmlaunch|vmresume|cmpxchg16b|xsave[a-z0-9]*|xrstor[a-z0-9]*|xgetbv|xsetbv|fxsave[a-z0-9]*|fxrstor[a-z0-9]*|ldmxcsr|stmxcsr|vldmxcsr|vstmxcsr|endbr32|endbr64|syscall|sysenter|sysret[a-z]*|sysexit[a-z]*|rdrand|rdseed|xbegin|xend|xabort|xtest|emms|femms|f[a-z0-9]*|[(]bad[)])$'
# Operands: SSE/AVX/MMX/x87 registers.
BAD_OPERAND='%[xyz]mm[0-9]|%mm[0-7]|%st'
PREFIXES='^(lock|rep|repz|repe|repnz|repne|data16|data32|addr16|addr32|cs|ds|es|ss|fs|gs|notrack|bnd|rex[.a-z]*|rex)$'

check() {
	sec=$1
	mode=$2
	if ! "$OBJDUMP" -h "$ELF" | awk '{print $2}' | grep -qx -- "$sec"; then
		return 0
	fi
	"$OBJDUMP" -d --no-show-raw-insn -M "$mode" -j "$sec" "$ELF" |
		awk -v sec="$sec" -v badm="$BAD_MNEMONIC" -v bado="$BAD_OPERAND" -v pfx="$PREFIXES" '
		/^[0-9a-f]+ <.*>:$/ { skip = ($2 ~ /_data>:$/); next }
		skip { next }
		/^ *[0-9a-f]+:\t/ {
			line = $0
			sub(/^ *[0-9a-f]+:\t/, "", line)
			sub(/#.*$/, "", line)
			gsub(/<[^>]*>/, "", line)
			n = split(line, tok, /[ \t]+/)
			i = 1
			while (i <= n && (tok[i] == "" || tok[i] ~ pfx)) i++
			if (i > n) next
			m = tok[i]
			ops = ""
			for (j = i + 1; j <= n; j++) ops = ops " " tok[j]
			if (m == "fninit") next
			if (m ~ badm || ops ~ bado) {
				printf "%s: forbidden instruction: %s\n", sec, $0
				bad = 1
			}
		}
		END { exit bad }
	'
}

rc=0
check .reset i8086 || rc=1
check .text16 i8086 || rc=1
check .tramp i8086 || rc=1
check .text32 i386 || rc=1
check .text x86-64 || rc=1
check .text_low x86-64 || rc=1
if [ $rc -ne 0 ]; then
	echo "check_insns: $ELF uses instructions the CPL0 emulator rejects" >&2
fi
exit $rc
