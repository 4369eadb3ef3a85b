#!/bin/sh
# Runs libFuzzer targets for a while each, one after another:
#   tests/fuzz/run.sh FUZZ_DIR SECONDS TARGET...
# Each target starts from a copy of its seeds (tests/fuzz/corpus/TARGET) in
# FUZZ_DIR/corpus/TARGET, so new inputs never land in the tree. Prints one
# line per target (executions, executions per second, crashes and the
# input of any crash, kept in FUZZ_DIR/crashes/TARGET); exits 1 if any
# target crashed. FUZZ_ARGS adds libFuzzer options (e.g. -runs=10000000
# to stop after that many executions).
set -u
dir=$1
secs=$2
shift 2
here=$(dirname "$0")
failed=0
for t in "$@"; do
    bin=$dir/fuzz_$t
    corpus=$dir/corpus/$t
    crashes=$dir/crashes/$t
    log=$dir/logs/$t.log
    mkdir -p "$corpus" "$crashes" "$dir/logs"
    if [ -d "$here/corpus/$t" ]; then
        cp -n "$here/corpus/$t"/* "$corpus"/ 2>/dev/null
    fi
    # -close_fd_mask=2: the VMM's own log lines are formatted but not
    # printed; libFuzzer's and the sanitizers' reports still are.
    "$bin" -max_total_time="$secs" -print_final_stats=1 -close_fd_mask=2 \
        -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$crashes/" ${FUZZ_ARGS:-} "$corpus" \
        >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    if [ "$rc" -ne 0 ]; then
        failed=1
        printf 'fuzz %-12s execs %s exec/s %s crashes 1 %s (log %s)\n' "$t" "${execs:-?}" \
            "${rate:-?}" "${crash:-(no input written)}" "$log"
    else
        printf 'fuzz %-12s execs %s exec/s %s crashes 0\n' "$t" "${execs:-?}" "${rate:-?}"
    fi
done
exit $failed
