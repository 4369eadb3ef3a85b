#!/bin/sh
# Summarises the profiles `storage --perf DIR` recorded: for each test and
# VMM, the share of samples per thread and, for each thread with at least
# 5% of them, its hottest symbols (self time, kernel and user). Samples a
# vCPU took in guest mode count in the total but are not listed, so the
# listed shares are the VMM's host-side work.
#   bench/perf-summary.sh DIR [PATTERN]
set -eu
dir=$1
pattern=${2:-}
for data in "$dir"/*.data; do
    case $data in *"$pattern"*) ;; *) continue ;; esac
    name=$(basename "$data" .data)
    total=$(perf report -i "$data" --stdio --sort comm -g none 2>/dev/null |
        sed -n 's/^# Samples: \([0-9.]*[KM]*\).*/\1/p' | head -n 1)
    echo "== $name ($total samples)"
    perf report -i "$data" --stdio --no-children --sort comm -g none 2>/dev/null |
        awk '/^ +[0-9.]+%/ { printf "   thread %-18s %s\n", $2 " " $3, $1 }' | sed 's/  *$//'
    perf report -i "$data" --stdio --no-children --sort comm -g none 2>/dev/null |
        awk '/^ +[0-9.]+%/ { v = $1; sub("%", "", v); if (v + 0 >= 5) { $1 = ""; sub(/^ /, ""); print } }' |
        while IFS= read -r comm; do
            echo "   top of '$comm' (share of all samples):"
            perf report -i "$data" --stdio --no-children --comm "$comm" --sort sym -g none 2>/dev/null |
                awk '/^ +[0-9.]+%/ { $2 = ""; print "     " $0 }' | head -n 8
        done
done
