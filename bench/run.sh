#!/usr/bin/env bash
# CareFlow vs Kamailio, same SIPp harness, same run, same machine.
#
#   bench/run.sh                 full mode (12 s ladder steps, for the record; ~25-35 min)
#   QUICK=1 bench/run.sh         quick mode (6 s steps, shorter ladders; ~10-15 min)
#
# Knobs: DO="ours kam" (targets), PARTS="reg call mem" (phases), OUT (result dir,
#   default /tmp/careflow-bench/run-<date>), PORT (our SIP port, 5080), PROFILE=1 (start our
#   server with node --cpu-prof; profiles in $OUT/prof-*/ and summarised by bench/cpuprof.py),
#   REG_RATES / CALL_RATES / STEP_SECS / BISECT / FIXED_* override the mode defaults,
#   SHARED_BENCH (path of ../shared/bench), NODE (default node_modules/.bin/node = Node 24),
#   NODE_FLAGS (extra node options for our server, e.g. V8 heap flags to try), ENTRY (what our
#   server runs: dist/cli/main.js, built from the working tree at start, or src/cli/main.ts).
#
# Everything SIPp-side is ../shared/bench used as is, through its env knobs (run.sh, lib.sh,
# kam.sh, kamailio.cfg, gen_users.sh, scenarios, sippstat.py, pcap_latency.py). What differs
# for our server, and why:
#   * user names: CareFlow requires passwords of at least 12 characters, and the harness
#     password is "pw"+user. The shared u0000001/c0000001/m0000001 users give 10-character
#     passwords, so for our server the injection files are made by the same gen_users.sh with
#     the prefixes cfu/cfc/cfm (cfu0000001 / pwcfu0000001) and passed as USERS_CSV_IN /
#     CALLERS_CSV_IN. They are imported with `careflow user import` as number = SIP user,
#     password = "pw"+user (our users log in by number as well as by careflow_<id>).
#   * the callee stays "bob" (Request-URI user = number bob) but its password is
#     "pwbob-careflow" (CALLEE_PASS), for the same reason.
#   * bench/mem.sh: the shared mem.sh with the user prefix as a knob (see its header).
# Kamailio gets the shared defaults (u/c/m users, bob/pwbob), kamailio.cfg, `-n 2`.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARED_BENCH=${SHARED_BENCH:-$(cd "$ROOT/../shared/bench" && pwd)}
export SHARED_BENCH
NODE=${NODE:-$ROOT/node_modules/.bin/node}
QUICK=${QUICK:-0}
DO=${DO:-"ours kam"}
PARTS=${PARTS:-"reg call mem"}
PORT=${PORT:-5080}
KPORT=5070                       # fixed in kamailio.cfg
PROFILE=${PROFILE:-0}
OUT=${OUT:-/tmp/careflow-bench/run-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

if [[ $QUICK == 1 ]]; then
  : "${STEP_SECS:=6}" "${BISECT:=1}" "${FIXED_REG_SECS:=8}" "${FIXED_CALL_SECS:=15}" "${SETTLE_SECS:=3}"
  : "${REG_RATES:=2000 4000 8000 12000 16000 24000}"
  : "${CALL_RATES:=500 1000 1500 2000 3000 5000}"
else
  : "${STEP_SECS:=12}" "${BISECT:=2}" "${FIXED_REG_SECS:=15}" "${FIXED_CALL_SECS:=30}" "${SETTLE_SECS:=4}"
  : "${REG_RATES:=2000 4000 8000 12000 16000 20000 24000 28000}"
  : "${CALL_RATES:=500 1000 1500 2000 3000 4000 5000 6000}"
fi
: "${FIXED_REG_RATE:=1000}" "${FIXED_CPS:=200}" "${HOLD_MS:=500}" "${PCAP:=1}"
export STEP_SECS BISECT FIXED_REG_SECS FIXED_CALL_SECS SETTLE_SECS REG_RATES CALL_RATES FIXED_REG_RATE FIXED_CPS HOLD_MS PCAP

# Host steal time (this is a VM): /proc/stat "steal" jiffies as a share of all jiffies, per
# phase, in $OUT/steal.tsv. The shared run.sh's other_cpu% does not include steal.
cpu_snap() { awk '/^cpu /{t=0; for (i=2;i<=NF;i++) t+=$i; print $9, t}' /proc/stat; }
STEAL_S=""; STEAL_T=""
steal_begin() { read -r STEAL_S STEAL_T < <(cpu_snap); }
steal_end() {  # steal_end PHASE
  local s t
  read -r s t < <(cpu_snap)
  printf "%s\t%.1f\n" "$1" "$(awk -v a="$STEAL_S" -v b="$s" -v c="$STEAL_T" -v d="$t" 'BEGIN{print (d>c ? 100*(b-a)/(d-c) : 0)}')" >>"$OUT/steal.tsv"
}
log() { echo "[bench $(date +%H:%M:%S)] $*" | tee -a "$OUT/progress.log" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ------------------------------------------------------------------ record machine + commands
{
  echo "date: $(date -Is)"
  echo "nproc: $(nproc)"; grep -m1 'model name' /proc/cpuinfo || true
  echo "mem: $(free -m | awk '/^Mem:/{print $2" MiB"}')"; echo "kernel: $(uname -r)"; echo "debian: $(cat /etc/debian_version 2>/dev/null)"
  echo "node: $("$NODE" -v) ($NODE)"; echo "kamailio: $(kamailio -v 2>/dev/null | head -1)"
  echo "sipp: $(sipp -v 2>&1 | grep -m1 SIPp | xargs)"
  echo "careflow git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) $(git -C "$ROOT" status --porcelain 2>/dev/null | grep -q . && echo '(working tree has local changes)')"
  echo "careflow src diff vs HEAD (sha1 of git diff): $(git -C "$ROOT" diff HEAD -- src 2>/dev/null | sha1sum | cut -c1-12), files: $(git -C "$ROOT" diff --name-only HEAD -- src 2>/dev/null | xargs)"
  echo "net.core.rmem_max: $(cat /proc/sys/net/core/rmem_max)"
  echo "our server: ${ENTRY:-dist/cli/main.js}, NODE_FLAGS=${NODE_FLAGS:-}, CAREFLOW_MEMORY_MODE=${CAREFLOW_MEMORY_MODE:-auto}"
} >"$OUT/machine.txt"
{
  echo "cd $ROOT && QUICK=$QUICK DO=\"$DO\" PARTS=\"$PARTS\" PROFILE=$PROFILE bench/run.sh"
  echo "STEP_SECS=$STEP_SECS BISECT=$BISECT REG_RATES=\"$REG_RATES\" CALL_RATES=\"$CALL_RATES\""
  echo "FIXED_REG_RATE=$FIXED_REG_RATE FIXED_REG_SECS=$FIXED_REG_SECS FIXED_CPS=$FIXED_CPS FIXED_CALL_SECS=$FIXED_CALL_SECS HOLD_MS=$HOLD_MS PCAP=$PCAP SETTLE_SECS=$SETTLE_SECS"
} >"$OUT/commands.txt"
log "results -> $OUT"

# The peers this needs, named with their Debian packages (a missing one stops the run here
# rather than leaving a column of dashes).
need=(sipp:sip-tester python3:python3)
[[ $PCAP == 1 ]] && need+=(tcpdump:tcpdump)
[[ " $DO " == *" kam "* ]] && need+=(kamailio:kamailio)
for n in "${need[@]}"; do
  command -v "${n%%:*}" >/dev/null || die "${n%%:*} is missing: apt-get install ${n#*:} (or PCAP=0 for tcpdump)"
done

# ------------------------------------------------------------------ cleanup
OURS_PID=""
KAM_UP=0
export RUNDIR=$OUT/kamailio-rundir     # kam.sh's pid file, ctl socket, log
cleanup() {
  [[ -n $OURS_PID ]] && stop_ours
  [[ $KAM_UP == 1 ]] && "$SHARED_BENCH/kam.sh" stop || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ our server
max_reg=0; for r in $REG_RATES $FIXED_REG_RATE; do (( r > max_reg )) && max_reg=$r; done
NUSERS=$(( max_reg * (STEP_SECS > FIXED_REG_SECS ? STEP_SECS : FIXED_REG_SECS) ))   # same formula as run.sh
(( NUSERS > 400000 )) && NUSERS=400000
NCALLERS=1000
NMEM=100000
OURS_CALLEE_PASS=pwbob-careflow
TEMPLATE=$OUT/ours-template-data

prepare_ours() {
  [[ -d $TEMPLATE ]] && return 0
  log "ours: generating $NUSERS REGISTER users, $NCALLERS callers, $NMEM memory users + bob"
  "$SHARED_BENCH/gen_users.sh" cfu "$NUSERS" >"$OUT/ours-users.sipp.csv"
  "$SHARED_BENCH/gen_users.sh" cfc "$NCALLERS" >"$OUT/ours-callers.sipp.csv"
  awk -v nu="$NUSERS" -v nc="$NCALLERS" -v nm="$NMEM" -v bp="$OURS_CALLEE_PASS" 'BEGIN {
      print "name,number,password"
      for (i = 1; i <= nu; i++) { u = sprintf("cfu%07d", i); print u "," u ",pw" u }
      for (i = 1; i <= nc; i++) { u = sprintf("cfc%07d", i); print u "," u ",pw" u }
      for (i = 1; i <= nm; i++) { u = sprintf("cfm%07d", i); print u "," u ",pw" u }
      print "bob,bob," bp }' >"$OUT/ours-import.csv"
  mkdir -p "$TEMPLATE.tmp"
  local t0=$EPOCHREALTIME
  ( cd "$ROOT" && CAREFLOW_DATA_DIR=$TEMPLATE.tmp CAREFLOW_DOMAIN=127.0.0.1 "$NODE" src/cli/main.ts user import "$OUT/ours-import.csv" --json >/dev/null ) \
    || die "careflow user import failed"
  mv "$TEMPLATE.tmp" "$TEMPLATE"
  log "ours: imported $(( NUSERS + NCALLERS + NMEM + 1 )) users in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}') s"
}

# Our server runs as deployed (scripts/install.sh, deploy/Dockerfile): the JavaScript build, made
# from the working tree now. Type stripping (ENTRY=src/cli/main.ts) costs ~30 MiB more RSS.
ENTRY=${ENTRY:-dist/cli/main.js}
if [[ $ENTRY == dist/* && " $DO " == *" ours "* ]]; then
  ( cd "$ROOT" && "$NODE" node_modules/typescript/bin/tsc -p tsconfig.build.json ) || die "npm run build failed"
fi

# start_ours LABEL: fresh copy of the template data dir, server on 127.0.0.1:$PORT; sets OURS_PID
start_ours() {
  local label=$1 data=$OUT/ours-$1-data prof=()
  rm -rf "$data"; cp -a "$TEMPLATE" "$data"
  if [[ $PROFILE == 1 ]]; then mkdir -p "$OUT/prof-$label"; prof=(--cpu-prof "--cpu-prof-dir=$OUT/prof-$label"); fi
  ( cd "$ROOT" && CAREFLOW_DATA_DIR=$data CAREFLOW_DOMAIN=127.0.0.1 CAREFLOW_SIP_LISTEN=127.0.0.1:$PORT \
      CAREFLOW_SIP_TLS_LISTEN=127.0.0.1:$(( PORT + 7 )) CAREFLOW_HTTP_LISTEN=127.0.0.1:$(( PORT + 8 )) \
      CAREFLOW_LOG_LEVEL=${CAREFLOW_LOG_LEVEL:-warn} exec "$NODE" ${NODE_FLAGS:-} "${prof[@]}" "$ENTRY" serve ) \
      >"$OUT/ours-$label.log" 2>&1 </dev/null &
  OURS_PID=$!
  for _ in $(seq 1 150); do
    grep -qE 'careflow: listening|CareFlow Voice is running' "$OUT/ours-$label.log" 2>/dev/null && break
    kill -0 "$OURS_PID" 2>/dev/null || { cat "$OUT/ours-$label.log" >&2; OURS_PID=""; die "our server exited at start"; }
    sleep 0.2
  done
  grep -qE 'careflow: listening|CareFlow Voice is running' "$OUT/ours-$label.log" || die "our server did not start within 30 s"
  log "ours[$label]: pid $OURS_PID on 127.0.0.1:$PORT"
}

stop_ours() {
  local pid=$OURS_PID
  [[ -n $pid ]] || return 0
  OURS_PID=""
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$pid" 2>/dev/null && { log "ours: pid $pid still alive 20 s after SIGTERM, SIGKILL"; kill -9 "$pid" 2>/dev/null || true; }
  wait "$pid" 2>/dev/null || true
}

ours_runsh() {  # ours_runsh OUTNAME PHASES [extra env...]
  local name=$1 phases=$2; shift 2
  env "$@" OUTDIR="$OUT/$name" TARGET_PID="$OURS_PID" PHASES="$phases" \
    USERS_CSV_IN="$OUT/ours-users.sipp.csv" CALLERS_CSV_IN="$OUT/ours-callers.sipp.csv" \
    CALLEE=bob CALLEE_PASS="$OURS_CALLEE_PASS" \
    "$SHARED_BENCH/run.sh" 127.0.0.1 "$PORT" >"$OUT/$name.txt" 2>"$OUT/$name.err" || log "run.sh $name exited $?"
  tail -n +1 "$OUT/$name.txt" | sed -n '/^===/,$p' >&2
}

run_ours() {
  prepare_ours
  # smoke: the scenarios' From/To/R-URI forms work against our server at a low rate
  start_ours smoke
  ours_runsh ours-smoke "regladder callladder" REG_RATES=200 CALL_RATES=20 STEP_SECS=3 BISECT=0 PCAP=0 SETTLE_SECS=1
  stop_ours
  grep -q 'reg ladder: max PASS (0 failed) = 200/s' "$OUT/ours-smoke.txt" && grep -q 'call ladder: max PASS (0 failed) = 20/s' "$OUT/ours-smoke.txt" \
    || log "WARNING: smoke test (200 REGISTER/s, 20 calls/s) did not pass; see $OUT/ours-smoke/"
  for part in $PARTS; do
    case $part in
      reg)  start_ours reg;  steal_begin; ours_runsh ours-reg "fixedreg regladder"; steal_end ours-reg; stop_ours ;;
      call) start_ours call; steal_begin; ours_runsh ours-call "fixedcall callladder"; steal_end ours-call; stop_ours ;;
      mem)
        start_ours mem
        OUTDIR=$OUT/ours-mem MEM_PREFIX=cfm MEM_SETTLE_SECS=${MEM_SETTLE_SECS:-40} "$HERE/mem.sh" 127.0.0.1 "$PORT" "$OURS_PID" >"$OUT/ours-mem.txt" 2>"$OUT/ours-mem.err" || log "mem.sh exited $?"
        cat "$OUT/ours-mem.txt" >&2
        stop_ours ;;
    esac
    sleep 2
  done
}

# ------------------------------------------------------------------ kamailio (reference)
run_kam() {
  local part pid
  for part in $PARTS; do
    case $part in
      reg|call)
        pid=$("$SHARED_BENCH/kam.sh" start 2 1024); KAM_UP=1
        log "kamailio[$part]: -n 2 -m 1024 pid $pid"
        local ph="fixedreg regladder"; [[ $part == call ]] && ph="fixedcall callladder"
        steal_begin
        OUTDIR=$OUT/kam-$part TARGET_PID=$pid PHASES=$ph "$SHARED_BENCH/run.sh" 127.0.0.1 "$KPORT" >"$OUT/kam-$part.txt" 2>"$OUT/kam-$part.err" \
          || log "run.sh kam-$part exited $?"
        steal_end "kam-$part"
        sed -n '/^===/,$p' "$OUT/kam-$part.txt" >&2
        "$SHARED_BENCH/kam.sh" stop; KAM_UP=0 ;;
      mem)
        pid=$("$SHARED_BENCH/kam.sh" start 2 512); KAM_UP=1
        log "kamailio[mem]: -n 2 -m 512 pid $pid"
        MEM_EXTRA_CMD="'$SHARED_BENCH/kam.sh' ctl stats.get_statistics usrloc: ; '$SHARED_BENCH/kam.sh' ctl core.shmmem" \
          OUTDIR=$OUT/kam-mem "$SHARED_BENCH/mem.sh" 127.0.0.1 "$KPORT" "$pid" >"$OUT/kam-mem.txt" 2>"$OUT/kam-mem.err" || log "kam mem.sh exited $?"
        "$SHARED_BENCH/kam.sh" stop; KAM_UP=0 ;;
    esac
    sleep 2
  done
}

for t in $DO; do
  case $t in
    ours) run_ours ;;
    kam)  run_kam ;;
    *) die "unknown target $t (ours|kam)" ;;
  esac
done

python3 "$HERE/summarize.py" "$OUT" | tee "$OUT/table.md"
if [[ $PROFILE == 1 ]]; then
  for f in "$OUT"/prof-*/*.cpuprofile; do
    [[ -e $f ]] || continue
    echo; echo "== $f"; python3 "$HERE/cpuprof.py" "$f" 25
  done | tee "$OUT/profile.txt"
fi
log "done: $OUT/table.md"
