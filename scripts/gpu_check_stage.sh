# stage(): gpu_check.sh's time-boxed stage runner, sourced (tests/test_gpu_check.py sources it too).
# Needs: $log (the log file), $out (OUT_DIR, for stages.tsv), the array failed=(), and
# GPU_CHECK_BUDGET (seconds for the whole check, default 540) with gpu_check_t0 (its start, epoch s).
# A stage runs for at most its own limit and what is left of the budget less GPU_CHECK_RESERVE
# (default 30 s, for the summary), so that the check ends, and writes its JSON, inside the device
# tool's 10 minutes; a stage left with under 5 s is not started and is logged as skipped (exit 124,
# timeout's status, 0 s).
gpu_check_t0=${gpu_check_t0:-$(date +%s)}

stage() {  # stage NAME SECONDS COMMAND...
    local name=$1 limit=$2 rc left
    shift 2
    left=$(( ${GPU_CHECK_BUDGET:-540} - ${GPU_CHECK_RESERVE:-30} - ($(date +%s) - gpu_check_t0) ))
    if [ "$left" -lt 5 ]; then
        echo "== $name: skipped, the check's time budget (GPU_CHECK_BUDGET=${GPU_CHECK_BUDGET:-540} s) is spent" \
            | tee -a "$log"
        printf '%s\t%s\t%s\n' "$name" 124 0 >>"$out/stages.tsv"
        failed+=("$name")
        return 124
    fi
    [ "$left" -lt "$limit" ] && limit=$left
    echo "== $name (limit ${limit} s, $(date -u +%T) UTC)" | tee -a "$log"
    SECONDS=0
    timeout "$limit" "$@" 2>&1 | tee -a "$log"
    rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc after ${SECONDS} s" | tee -a "$log"
    printf '%s\t%s\t%s\n' "$name" "$rc" "$SECONDS" >>"$out/stages.tsv"
    [ "$rc" -eq 0 ] || failed+=("$name")
    return "$rc"
}
