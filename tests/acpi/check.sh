#!/bin/sh
# Checks generated ACPI tables with ACPICA's iasl: every DIR/*.dat is
# disassembled (iasl -d) and the disassembly compiled back (iasl); any error
# or warning from either, or an inline "****" complaint in the disassembly,
# fails the check. Exit 0: clean; 1: problems (printed); 77: iasl missing.
#
# usage: tests/acpi/check.sh DIR
set -u

dir=${1:?usage: check.sh DIR}
if ! command -v iasl >/dev/null 2>&1; then
    echo "check.sh: iasl not found (Debian: apt-get install acpica-tools); skipping" >&2
    exit 77
fi
cd "$dir" || exit 1

status=0
count=0
for table in *.dat; do
    [ -e "$table" ] || continue
    count=$((count + 1))
    base=${table%.dat}
    out=$(iasl -d "$table" 2>&1)
    if [ ! -s "$base.dsl" ] || printf '%s\n' "$out" | grep -Eqi 'error|warning|does not contain'; then
        printf '%s: iasl -d reported:\n%s\n' "$table" "$out"
        status=1
        continue
    fi
    if grep -En '\*\*\*\*|Incorrect|Invalid' "$base.dsl"; then
        printf '%s: the disassembly flags the lines above\n' "$table"
        status=1
    fi
    mkdir -p recompiled
    out=$(iasl -p "recompiled/$base" "$base.dsl" 2>&1)
    if ! printf '%s\n' "$out" | grep -q 'Compilation successful. 0 Errors, 0 Warnings'; then
        printf '%s: recompiling the disassembly reported:\n%s\n' "$table" "$out"
        status=1
    fi
done
if [ "$count" -eq 0 ]; then
    echo "check.sh: no .dat files in $dir" >&2
    exit 1
fi
[ "$status" -eq 0 ] && echo "check.sh: $count tables disassemble and recompile cleanly"
exit "$status"
