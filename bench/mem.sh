#!/usr/bin/env bash
# Memory of our server vs. number of registered contacts.
# usage: bench/mem.sh TARGET_HOST TARGET_PORT TARGET_PID
#
# A copy of ../shared/bench/mem.sh; what differs: the user-name prefix is a
# knob (MEM_PREFIX, default "m" as in the shared script). The shared script hard-codes
# `gen_users.sh m`, i.e. users m0000001.. with password "pwm0000001" (10 characters), and
# CareFlow refuses passwords shorter than 12 characters at import; bench/run.sh therefore
# imports cfm0000001.. (password "pwcfm0000001") and runs this with MEM_PREFIX=cfm.
# Also: MEM_SETTLE_SECS (default 0 = as the shared script): when > 0, one more point is taken
# that many seconds after the last one ("settled"), so memory held only by finished SIP
# transactions (RFC 3261 Timer J = 32 s on UDP) is told apart from memory per contact.
# Also adds -trace_err to the SIPp run and logs the per-point SIPp counts to reg.txt.
# Everything else (lib.sh, gen_users.sh, reg_uac.xml, the SIPp flags, the measurement from
# /proc/PID/smaps_rollup) is the shared harness, used from ../shared/bench.
#   env: MEM_COUNTS (cumulative contact counts, default "10000 100000"), MEM_RATE (REGISTER/s, 2000),
#        MEM_PREFIX (m), MEM_EXTRA_CMD, OUTDIR, SHARED_BENCH (path of ../shared/bench)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SHARED_BENCH=${SHARED_BENCH:-$(cd "$HERE/../../shared/bench" && pwd)}
# shellcheck source=../../shared/bench/lib.sh
source "$SHARED_BENCH/lib.sh"
HOST=${1:?usage}; PORT=${2:?usage}; TPID=${3:?usage: mem.sh HOST PORT TARGET_PID}
check_loopback "$HOST"
MEM_COUNTS=${MEM_COUNTS:-"10000 100000"}
MEM_RATE=${MEM_RATE:-2000}
MEM_PREFIX=${MEM_PREFIX:-m}
OUTDIR=${OUTDIR:-/tmp/sipbench/mem-$(date +%Y%m%d-%H%M%S)-$PORT}
mkdir -p "$OUTDIR"
TABLE=$OUTDIR/mem.tsv
printf "state\tcontacts\trss_sum_MiB\tpss_sum_MiB\tprocs\n" >"$TABLE"

point() {  # point LABEL CONTACTS
  sleep 3
  local rss pss n
  read -r rss pss n < <(mem_tree "$TPID")
  printf "%s\t%s\t%.1f\t%.1f\t%s\n" "$1" "$2" "$(awk -v x="$rss" 'BEGIN{print x/1024}')" "$(awk -v x="$pss" 'BEGIN{print x/1024}')" "$n" | tee -a "$TABLE" >&2
  if [[ -n ${MEM_EXTRA_CMD:-} ]]; then { echo "== $1"; bash -c "$MEM_EXTRA_CMD"; } >>"$OUTDIR/extra.txt" 2>&1 || true; fi
}

point idle 0
done_n=0
for n in $MEM_COUNTS; do
  add=$(( n - done_n ))
  (( add > 0 )) || continue
  csv=$OUTDIR/users-$n.csv
  "$SHARED_BENCH/gen_users.sh" "$MEM_PREFIX" "$add" $(( done_n + 1 )) >"$csv"
  dir=$OUTDIR/reg-to-$n
  wait_quiet
  read -r wall cpu rc < <(run_sipp_uac "$dir" $(( add / MEM_RATE * 3 + 60 )) -- "$HOST:$PORT" -sf "$SCN/reg_uac.xml" \
     -inf "$csv" -p "$UAC_REG_PORT" -cp "$UAC_REG_CP" -mp "$UAC_REG_MP" -r "$MEM_RATE" -rp 1000 -m "$add" \
     -l $(( MEM_RATE * 5 )) "${SIPP_COMMON[@]}" -trace_stat -stf stat.csv -fd 5 -trace_err)
  read -r created ok failed _ < <(python3 "$SHARED_BENCH/sippstat.py" "$dir/stat.csv")
  echo "  registered $ok/$add new users (failed $failed, rc $rc, ${wall}s)" | tee -a "$OUTDIR/reg.txt" >&2
  done_n=$n
  point "after-$n" "$n"
done
if (( ${MEM_SETTLE_SECS:-0} > 0 )); then
  sleep "$MEM_SETTLE_SECS"
  point "settled-${MEM_SETTLE_SECS}s" "$done_n+${MEM_SETTLE_SECS}s"
fi
echo
column -t -s $'\t' "$TABLE"
[[ -s $OUTDIR/extra.txt ]] && cat "$OUTDIR/extra.txt"
exit 0
