#!/bin/bash
# Outbound queue benchmark: how fast a queue full of deferred mail drains
# into a local sink (Postfix's smtp-sink), for postel's queue and for a
# private Postfix instance's queue manager, measured in the same run.
#
# For each side:
#   1. the MTA is set up to send everything to 127.0.0.1:SINKPORT (postel:
#      `[relay] host/port`; Postfix: `relayhost = [127.0.0.1]:SINKPORT`);
#   2. BENCH_QUEUE_N messages are injected with smtp-source over 20 SMTP
#      sessions while the sink is down, so every one ends up deferred in
#      the queue (postel: to an alias that forwards to sink@sink.test;
#      Postfix: relayed for 127.0.0.0/8);
#   3. the sink starts, the queue is flushed (`postel queue flush`,
#      `postqueue -f`), and the clock runs until the sink has counted
#      every message (smtp-sink -c) and the queue is empty.
# Deliveries per second = messages / that time.
#
#   POSTEL_BIN       binary under test (default ./postel)
#   BENCH_QUEUE_N    messages (default 10000)
#   BENCH_SIZE       message size in bytes (default 5120)
#   BENCH_ONLY       "postel" or "postfix" to run one side only
#   BENCH_TIMEOUT    seconds allowed for each injection and each drain (180)
#   BENCH_PERF       a file: perf record -g of postel during the drain
#   BENCH_LOG_LEVEL  postel's log_level (warn); BENCH_KEEP_LOG: copy its log there
#
# Both keep their queues on the repository's disk (never tmpfs).
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
REPO=$PWD
POSTEL_BIN=${POSTEL_BIN:-$REPO/postel}
N=${BENCH_QUEUE_N:-10000}
SIZE=${BENCH_SIZE:-5120}
ONLY=${BENCH_ONLY:-}
LIMIT=${BENCH_TIMEOUT:-180}
PY=/usr/bin/python3
SMTP_SOURCE=/usr/sbin/smtp-source
SMTP_SINK=/usr/sbin/smtp-sink

WORK=$(mktemp -d "$REPO/bench/.work.XXXXXX") || exit 1
chmod 755 "$WORK"
POSTEL_PID=""
POSTFIX_DIR=""
SINK_PID=""

stop_sink() {
    if [ -n "$SINK_PID" ]; then
        kill -TERM "$SINK_PID" 2>/dev/null
        wait "$SINK_PID" 2>/dev/null
        SINK_PID=""
    fi
}

stop_postel() {
    if [ -n "$POSTEL_PID" ] && kill -0 "$POSTEL_PID" 2>/dev/null; then
        kill -TERM "$POSTEL_PID" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$POSTEL_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$POSTEL_PID" 2>/dev/null
        wait "$POSTEL_PID" 2>/dev/null
    fi
    POSTEL_PID=""
}

stop_postfix() {
    [ -n "$POSTFIX_DIR" ] || return 0
    postfix -c "$POSTFIX_DIR/etc" stop >/dev/null 2>&1
    local pid=""
    for _ in $(seq 50); do
        pid=$(cat "$POSTFIX_DIR/spool/pid/master.pid" 2>/dev/null | tr -d ' ')
        [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || { pid=""; break; }
        sleep 0.1
    done
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
    POSTFIX_DIR=""
}

cleanup() {
    stop_sink
    stop_postel
    stop_postfix
    [ -n "${BENCH_KEEP_LOG:-}" ] && cp "$WORK/postel.log" "$BENCH_KEEP_LOG" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$REPO/bench/lib.sh"

elapsed() { echo "$1 $2" | awk '{ printf "%.3f", $2 - $1 }'; }

# inject PORT RCPT: N messages over 20 sessions; fails on any smtp-source problem.
inject() {
    local port=$1 rcpt=$2
    timeout "$LIMIT" "$SMTP_SOURCE" -s 20 -m "$N" -l "$SIZE" -f sender@example.org -t "$rcpt" \
        "127.0.0.1:$port" >"$WORK/smtp-source.out" 2>&1
    local rc=$?
    if [ $rc -ne 0 ] || grep -qiE 'fatal|error|warning' "$WORK/smtp-source.out"; then
        echo "bench: smtp-source exited $rc (124 = over ${LIMIT}s):" >&2
        tail -5 "$WORK/smtp-source.out" >&2
        return 1
    fi
}

# start_sink PORT: a fresh smtp-sink counting DATA completions into sink.out.
start_sink() {
    local user=()
    [ "$(id -u)" = 0 ] && user=(-u postfix)
    : >"$WORK/sink.out"
    "$SMTP_SINK" -c "${user[@]}" "127.0.0.1:$1" 1000 >"$WORK/sink.out" 2>&1 &
    SINK_PID=$!
    wait_port "$1" 10 || { cat "$WORK/sink.out" >&2; return 1; }
}

# wait_sink COUNT: until the sink's counter reaches COUNT (bounded).
# smtp-sink -c rewrites "sess=N quit=N mesg=N" after each event.
wait_sink() {
    $PY - "$WORK/sink.out" "$1" "$LIMIT" <<'EOF'
import os, re, sys, time
path, want, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
end = time.time() + limit
pat = re.compile(rb"mesg=(\d+)")
n = 0
while time.time() < end:
    with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - 200))
        found = pat.findall(f.read())
    if found:
        n = int(found[-1])
        if n >= want:
            sys.exit(0)
    time.sleep(0.01)
print("bench: the sink counted %d of %d" % (n, want), file=sys.stderr)
sys.exit(1)
EOF
}

declare -A RESULT

# ---------------------------------------------------------------- Postfix
postfix_setup() {  # PORT SINKPORT
    POSTFIX_DIR=$WORK/postfix
    postfix_start "$POSTFIX_DIR" "$1" "relayhost = [127.0.0.1]:$2
smtp_tls_security_level = none"
}

postfix_count() {  # QUEUE...: files in those queue directories
    local q n=0
    for q in "$@"; do
        n=$((n + $(find "$POSTFIX_DIR/spool/$q" -type f 2>/dev/null | wc -l)))
    done
    echo $n
}

# postfix_wait_deferred: until all N sit in the deferred queue and nothing
# is in flight.
postfix_wait_deferred() {
    local end=$(( $(date +%s) + LIMIT )) dfr busy
    while :; do
        dfr=$(postfix_count deferred)
        busy=$(postfix_count incoming active maildrop)
        [ "$dfr" -ge "$N" ] && [ "$busy" = 0 ] && return 0
        [ "$(date +%s)" -ge "$end" ] && { echo "bench: postfix deferred $dfr of $N ($busy busy)" >&2; return 1; }
        sleep 0.2
    done
}

bench_postfix() {
    local port sink t0 t1 el left
    port=$(free_port); sink=$(free_port)
    postfix_setup "$port" "$sink" || { echo "bench: postfix setup failed" >&2; return 1; }
    inject "$port" sink@sink.test || return 1
    postfix_wait_deferred || return 1
    start_sink "$sink" || return 1
    t0=$(now)
    postqueue -c "$POSTFIX_DIR/etc" -f || return 1
    wait_sink "$N" || { tail -5 "$POSTFIX_DIR/maillog" >&2; return 1; }
    t1=$(now)
    el=$(elapsed "$t0" "$t1")
    left=$(postfix_count incoming active deferred)
    RESULT[postfix]=$(rate "$N" "$el")
    echo "postfix: $N deferred messages delivered to the sink ${el}s after postqueue -f ($left left in the queue)"
    stop_sink
    stop_postfix
}

# ---------------------------------------------------------------- postel
postel_queue_summary() {  # prints "TOTAL DEFERRED"
    "$POSTEL_BIN" -c "$WORK/postel.conf" queue list 2>/dev/null |
        awk '$7 == "deferred" { d++ } /^-- .* in [0-9]+ Request/ { t = $(NF-1) }
             END { printf "%d %d\n", t, d }'
}

postel_wait_deferred() {
    local end=$(( $(date +%s) + LIMIT )) s
    while :; do
        s=$(postel_queue_summary)
        [ "${s#* }" -ge "$N" ] && return 0
        [ "$(date +%s)" -ge "$end" ] && { echo "bench: postel queue (total deferred): $s, want $N deferred" >&2; return 1; }
        sleep 0.5
    done
}

bench_postel() {
    [ -x "$POSTEL_BIN" ] || { echo "bench: $POSTEL_BIN not built" >&2; return 1; }
    local port sink t0 t1 el left
    port=$(free_port); sink=$(free_port)
    mkdir -p "$WORK/postel-data"
    cat >"$WORK/postel.conf" <<EOF
hostname = bench.example.test
data_dir = $WORK/postel-data
domains = example.test
log_level = ${BENCH_LOG_LEVEL:-warn}
[listen]
smtp = 127.0.0.1:$port
[limits]
connections_per_ip = 200
[relay]
host = 127.0.0.1
port = $sink
EOF
    "$POSTEL_BIN" -c "$WORK/postel.conf" alias add bench@example.test sink@sink.test \
        >"$WORK/postel-alias.log" 2>&1 || { cat "$WORK/postel-alias.log" >&2; return 1; }
    "$POSTEL_BIN" -c "$WORK/postel.conf" serve >"$WORK/postel.log" 2>&1 </dev/null &
    POSTEL_PID=$!
    wait_port "$port" 10 || { echo "bench: postel did not listen on $port" >&2; tail -20 "$WORK/postel.log" >&2; return 1; }
    inject "$port" bench@example.test || { tail -20 "$WORK/postel.log" >&2; return 1; }
    postel_wait_deferred || { tail -20 "$WORK/postel.log" >&2; return 1; }
    start_sink "$sink" || return 1
    local perf_pid=""
    if [ -n "${BENCH_PERF:-}" ]; then   # profile the drain: perf report -i $BENCH_PERF
        perf record -g -o "$BENCH_PERF" -p "$POSTEL_PID" >/dev/null 2>&1 &
        perf_pid=$!
        sleep 0.5
    fi
    local cpu0; cpu0=$(awk '{ print $14 + $15 }' "/proc/$POSTEL_PID/stat")
    t0=$(now)
    "$POSTEL_BIN" -c "$WORK/postel.conf" queue flush >/dev/null || return 1
    wait_sink "$N" || { tail -20 "$WORK/postel.log" >&2; return 1; }
    t1=$(now)
    local cpu1; cpu1=$(awk '{ print $14 + $15 }' "/proc/$POSTEL_PID/stat")
    [ -n "$perf_pid" ] && { kill -INT "$perf_pid"; wait "$perf_pid"; }
    echo "postel:  CPU time during the drain $(awk -v a="$cpu0" -v b="$cpu1" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", (b - a) / hz }')s"
    el=$(elapsed "$t0" "$t1")
    # the sink has them all; the queue records the deliveries right after
    local end=$(( $(date +%s) + 30 ))
    while left=$(postel_queue_summary); [ "${left% *}" != 0 ] && [ "$(date +%s)" -lt "$end" ]; do sleep 0.2; done
    RESULT[postel]=$(rate "$N" "$el")
    echo "postel:  $N deferred messages delivered to the sink ${el}s after queue flush (${left% *} left in the queue)"
    [ "${left% *}" = 0 ] || { echo "bench: postel's queue did not empty" >&2; return 1; }
    stop_sink
    stop_postel
}

# ---------------------------------------------------------------- main
[ -x "$SMTP_SOURCE" ] && [ -x "$SMTP_SINK" ] || die "smtp-source/smtp-sink missing (make deps installs postfix)"
echo "queue benchmark: $N deferred ${SIZE}-byte messages flushed to smtp-sink; $(nproc) cores"
echo "queues on $(df -P "$WORK" | awk 'NR==2 { print $1 }') ($WORK)"
status=0
if [ "$ONLY" != "postel" ]; then bench_postfix || status=1; fi
if [ "$ONLY" != "postfix" ]; then bench_postel || status=1; fi

a=${RESULT[postel]:-n/a}; b=${RESULT[postfix]:-n/a}
ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { if (a+0 > 0 && b+0 > 0) printf "%.2fx", a / b; else print "n/a" }')
echo
printf 'queue deliveries/second (%d messages to smtp-sink): postel %s, postfix %s, ratio %s\n' \
    "$N" "$a" "$b" "$ratio"
exit $status
