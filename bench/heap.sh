#!/usr/bin/env bash
# Where our server's memory goes with N registered contacts (diagnostic, not part of the table).
#   bench/heap.sh TEMPLATE_DATA_DIR [OUT]
# TEMPLATE_DATA_DIR: a data dir with the cfm* users imported (bench/run.sh leaves one in
# $OUT/ours-template-data). Starts the server with --inspect on 127.0.0.1:9329, registers
# MEM_COUNTS contacts through bench/mem.sh, then bench/heapcheck.mjs forces full GCs and prints
# RSS vs live V8 heap and the allocation sites that hold the live memory.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
NODE=${NODE:-$ROOT/node_modules/.bin/node}
TEMPLATE=${1:?usage: heap.sh TEMPLATE_DATA_DIR [OUT]}
OUT=${2:-/tmp/careflow-bench/heap-$(date +%Y%m%d-%H%M%S)}
PORT=${PORT:-5080}; IPORT=${IPORT:-9329}
ENTRY=${ENTRY:-dist/cli/main.js}   # as deployed; built from the working tree (see bench/run.sh)
[[ $ENTRY != dist/* ]] || ( cd "$ROOT" && "$NODE" node_modules/typescript/bin/tsc -p tsconfig.build.json )
mkdir -p "$OUT"; rm -rf "$OUT/data"; cp -a "$TEMPLATE" "$OUT/data"
( cd "$ROOT" && CAREFLOW_DATA_DIR=$OUT/data CAREFLOW_DOMAIN=127.0.0.1 CAREFLOW_SIP_LISTEN=127.0.0.1:$PORT \
    CAREFLOW_SIP_TLS_LISTEN=127.0.0.1:$(( PORT + 7 )) CAREFLOW_HTTP_LISTEN=127.0.0.1:$(( PORT + 8 )) CAREFLOW_LOG_LEVEL=warn \
    exec "$NODE" "--inspect=127.0.0.1:$IPORT" "$ENTRY" serve ) >"$OUT/server.log" 2>&1 </dev/null &
SPID=$!
trap 'kill -TERM $SPID 2>/dev/null || true' EXIT
for _ in $(seq 1 150); do grep -q 'CareFlow Voice is running' "$OUT/server.log" && break; sleep 0.2; done
( cd "$ROOT" && "$NODE" "$HERE/heapcheck.mjs" "$IPORT" "$OUT/go" ) >"$OUT/heap.txt" 2>&1 &
HPID=$!
sleep 2
OUTDIR=$OUT/mem MEM_PREFIX=cfm MEM_COUNTS=${MEM_COUNTS:-100000} "$HERE/mem.sh" 127.0.0.1 "$PORT" "$SPID" >"$OUT/mem.txt" 2>&1 || true
touch "$OUT/go"
wait "$HPID" || true
cat "$OUT/mem.txt" "$OUT/heap.txt"
