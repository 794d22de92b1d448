#!/usr/bin/env bash
# HTTP load benchmark on loopback: a bare actix-web handler (bench/bare-server)
# beside ucca-auth's credential-checked GET /v1/lookup?code=BSB30120, once with
# an OAuth access token and once with an enterprise API key.
#
# Builds the release binaries, starts both servers on 127.0.0.1 with a fresh
# temporary data directory, obtains a token through the real OAuth flow
# (bench/obtain-token.py) and a key through the ops API, then runs wrk against
# each target for DURATION at each connection count, interleaved, and prints
# requests/s, latency and the ratio to the bare server. Every process it starts
# is stopped on exit. Only 127.0.0.1 is loaded, and every wrk run is bounded.
#
# The catalog passed to ucca-auth is data/catalog.toml with every
# call_limit_monthly and burst_per_second removed, so neither the token's plan
# (operational) nor the key's (enterprise) refuses calls during the run.
#
# Settings (environment):
#   DURATION     seconds per wrk run (default 10)
#   CONNECTIONS  connection counts to run (default "2 16 64")
#   WRK_THREADS  wrk threads (default 1, leaving the second core to the servers)
#   SKIP_BUILD   set to 1 to use the existing target/release binaries
#   PORT_BASE    first of the loopback ports used: PORT_BASE and PORT_BASE+1
#                for ucca-auth, PORT_BASE+10 for bare-server (default 18080)
#   CARGO_TARGET_DIR  where the release binaries are built (default target)
#   BIN_DIR      run the ucca-auth and bare-server binaries in this directory
#                instead (implies SKIP_BUILD), to compare two builds
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-"2 16 64"}
WRK_THREADS=${WRK_THREADS:-1}
PORT_BASE=${PORT_BASE:-18080}
PUBLIC="http://127.0.0.1:$PORT_BASE"
OPS="http://127.0.0.1:$((PORT_BASE + 1))"
BARE="http://127.0.0.1:$((PORT_BASE + 10))"
LOOKUP_PATH="/v1/lookup?code=BSB30120"
OPS_API_KEY="bench-ops-key-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"

command -v wrk >/dev/null || { echo "http-load: wrk is not installed; run: apt-get install wrk" >&2; exit 1; }
command -v python3 >/dev/null || { echo "http-load: python3 is needed by bench/obtain-token.py" >&2; exit 1; }

if [[ -n "${BIN_DIR:-}" ]]; then
    SKIP_BUILD=1
else
    BIN_DIR="${CARGO_TARGET_DIR:-target}/release"
fi
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    cargo build --release -p ucca-auth -p bare-server
fi

WORK_DIR=$(mktemp -d -t ucca-http-load.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK_DIR"
}
trap cleanup EXIT

sed -e '/^call_limit_monthly/d' -e '/^burst_per_second/d' data/catalog.toml > "$WORK_DIR/catalog.toml"

OPS_API_KEY="$OPS_API_KEY" "$BIN_DIR/ucca-auth" \
    --bind "127.0.0.1:$PORT_BASE" --ops-bind "127.0.0.1:$((PORT_BASE + 1))" \
    --data-dir "$WORK_DIR/data" --catalog "$WORK_DIR/catalog.toml" \
    2> "$WORK_DIR/ucca-auth.log" &
PIDS+=($!)
"$BIN_DIR/bare-server" "127.0.0.1:$((PORT_BASE + 10))" 2> "$WORK_DIR/bare-server.log" &
PIDS+=($!)

wait_until_up() {
    for _ in $(seq 1 100); do
        if curl -fsS -o /dev/null "$1"; then
            return 0
        fi
        sleep 0.1
    done
    echo "http-load: $1 did not come up; server log:" >&2
    cat "$WORK_DIR"/*.log >&2
    exit 1
}
wait_until_up "$PUBLIC/healthz"
wait_until_up "$BARE$LOOKUP_PATH"

TOKEN=$(python3 bench/obtain-token.py "$PUBLIC" "$OPS" "$OPS_API_KEY" "$WORK_DIR/data/outbox" bench-token@example.com)
API_KEY=$(curl -fsS -X POST "$OPS/ops/keys" -H "Authorization: Bearer $OPS_API_KEY" -H "Content-Type: application/json" \
    -d '{"user": "bench-key@example.com", "tier": "enterprise"}' | python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])')

# The three targets must return the same body, or the comparison means nothing.
bare_body=$(curl -fsS "$BARE$LOOKUP_PATH" | python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin), sort_keys=True))')
for credential in "$TOKEN" "$API_KEY"; do
    real_body=$(curl -fsS -H "Authorization: Bearer $credential" "$PUBLIC$LOOKUP_PATH" \
        | python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin), sort_keys=True))')
    if [[ "$real_body" != "$bare_body" ]]; then
        echo "http-load: ucca-auth and bare-server return different bodies for $LOOKUP_PATH" >&2
        exit 1
    fi
done

# Runs wrk once; prints "requests/s p50 p99 non-2xx" for one target.
run_wrk() {
    local url=$1 connections=$2 header=$3 output threads
    threads=$(( WRK_THREADS < connections ? WRK_THREADS : connections ))
    local args=(-t "$threads" -c "$connections" -d "${DURATION}s" --latency --timeout 5s)
    if [[ -n "$header" ]]; then
        args+=(-H "$header")
    fi
    output=$(timeout $((DURATION + 30)) wrk "${args[@]}" "$url")
    echo "$output" > "$WORK_DIR/last-wrk.txt"
    local rps p50 p99 errors
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<< "$output")
    p50=$(awk '$1 == "50%" {print $2}' <<< "$output")
    p99=$(awk '$1 == "99%" {print $2}' <<< "$output")
    errors=$(awk '/Non-2xx or 3xx responses:/ {print $5}' <<< "$output")
    echo "$rps $p50 $p99 ${errors:-0}"
}

# A short warm-up of each target, not reported.
for target in "$BARE$LOOKUP_PATH|" "$PUBLIC$LOOKUP_PATH|Authorization: Bearer $TOKEN" "$PUBLIC$LOOKUP_PATH|Authorization: Bearer $API_KEY"; do
    timeout 20 wrk -t 1 -c 8 -d 2s -H "${target#*|}" "${target%%|*}" > /dev/null
done

echo "ucca-auth HTTP load, GET $LOOKUP_PATH, ${DURATION}s per run, wrk threads $WRK_THREADS, binaries in $BIN_DIR"
echo "started $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-12s %6s %12s %10s %10s %8s %8s\n' target conns "requests/s" p50 p99 non-2xx ratio
for connections in $CONNECTIONS; do
    read -r bare_rps bare_p50 bare_p99 bare_errors < <(run_wrk "$BARE$LOOKUP_PATH" "$connections" "")
    printf '%-12s %6s %12s %10s %10s %8s %8s\n' bare "$connections" "$bare_rps" "$bare_p50" "$bare_p99" "$bare_errors" "1.00"
    for target in token key; do
        if [[ $target == token ]]; then credential=$TOKEN; else credential=$API_KEY; fi
        read -r rps p50 p99 errors < <(run_wrk "$PUBLIC$LOOKUP_PATH" "$connections" "Authorization: Bearer $credential")
        ratio=$(awk -v real="$rps" -v bare="$bare_rps" 'BEGIN { printf "%.2f", real / bare }')
        printf '%-12s %6s %12s %10s %10s %8s %8s\n' "$target" "$connections" "$rps" "$p50" "$p99" "$errors" "$ratio"
    done
done
echo "finished $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
