#!/bin/bash
# SMTP acceptance benchmark: postel against a private Postfix instance, both
# loaded by Postfix's own smtp-source with the same messages, measured in the
# same run.  Prints a table of messages/second and ratios.
#
#   POSTEL_BIN     binary under test (default ./postel)
#   BENCH_N1       messages sent over 1 session   (default 1000)
#   BENCH_N20      messages sent over 20 sessions (default 5000)
#   BENCH_SIZE     message size in bytes          (default 5120)
#   BENCH_ONLY     "postel" or "postfix" to run one side only
#   BENCH_ROUNDS   loads per session count on each server, best kept (default 3)
#
# Both servers keep their data on the repository's disk (never tmpfs): an
# acknowledgement must mean the message is on disk.  smtp-source opens one
# connection per message (no -d), like most MX traffic.  Postfix answers 250
# once its queue file is fsync'ed and delivers to the Maildir afterwards;
# the acceptance rate is measured the same way for both, and the time until
# Postfix's Maildir holds every message is reported on its own line, as is
# the time until postel has written every staged message out as its file
# (it acknowledges once the message is durable in its index and writes the
# file behind the 250).
# Every run is bounded: at most BENCH_TIMEOUT (60) seconds of load each.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
REPO=$PWD
POSTEL_BIN=${POSTEL_BIN:-$REPO/postel}
N1=${BENCH_N1:-1000}
N20=${BENCH_N20:-5000}
SIZE=${BENCH_SIZE:-5120}
ONLY=${BENCH_ONLY:-}
LIMIT=${BENCH_TIMEOUT:-60}
ROUNDS=${BENCH_ROUNDS:-3}
PY=/usr/bin/python3
SMTP_SOURCE=/usr/sbin/smtp-source

WORK=$(mktemp -d "$REPO/bench/.work.XXXXXX") || exit 1
chmod 755 "$WORK"
POSTEL_PID=""
POSTFIX_DIR=""

stop_postel() {
    if [ -n "$POSTEL_PID" ] && kill -0 "$POSTEL_PID" 2>/dev/null; then
        kill -TERM "$POSTEL_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$POSTEL_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$POSTEL_PID" 2>/dev/null
        wait "$POSTEL_PID" 2>/dev/null
    fi
    POSTEL_PID=""
    if [ -n "$NSD_PID" ]; then kill "$NSD_PID" 2>/dev/null; wait "$NSD_PID" 2>/dev/null; fi
    NSD_PID=""
}

cleanup() {
    stop_postel
    if [ -n "$POSTFIX_DIR" ]; then
        postfix -c "$POSTFIX_DIR/etc" stop >/dev/null 2>&1
        # master exits after its children; wait for its pid file to go stale
        for _ in $(seq 50); do
            pid=$(cat "$POSTFIX_DIR/spool/pid/master.pid" 2>/dev/null | tr -d ' ')
            [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        [ -n "${pid:-}" ] && kill -KILL "$pid" 2>/dev/null
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$REPO/bench/lib.sh"


# load PORT SESSIONS COUNT: runs smtp-source, prints the wall time in seconds.
# Fails if smtp-source fails or runs past the limit.
load() {
    local port=$1 sessions=$2 count=$3 t0 t1
    t0=$(now)
    timeout "$LIMIT" "$SMTP_SOURCE" -s "$sessions" -m "$count" -l "$SIZE" \
        -f sender@example.org -t bench@example.test "127.0.0.1:$port" \
        >"$WORK/smtp-source.out" 2>&1
    local rc=$?
    t1=$(now)
    if [ $rc -ne 0 ]; then
        echo "bench: smtp-source exited $rc (124 = over ${LIMIT}s):" >&2
        tail -5 "$WORK/smtp-source.out" >&2
        return 1
    fi
    if grep -qiE 'fatal|error|warning' "$WORK/smtp-source.out"; then
        echo "bench: smtp-source reported problems:" >&2
        tail -5 "$WORK/smtp-source.out" >&2
        return 1
    fi
    echo "$t0 $t1" | awk '{ printf "%.3f\n", $2 - $1 }'
}


declare -A RESULT

# ---------------------------------------------------------------- Postfix
postfix_setup() {
    POSTFIX_DIR=$WORK/postfix
    local d=$POSTFIX_DIR
    mkdir -p "$d/etc" "$d/mail"
    chown postfix:postfix "$d/mail"
    echo "bench@example.test bench/" >"$d/etc/vmailbox"
    postfix_start "$d" "$1" "relayhost =
virtual_mailbox_domains = example.test
virtual_mailbox_base = $d/mail
virtual_mailbox_maps = texthash:$d/etc/vmailbox
virtual_uid_maps = static:$(id -u postfix)
virtual_gid_maps = static:$(id -g postfix)
virtual_mailbox_limit = 0"
}

postfix_delivered() {
    local m=$POSTFIX_DIR/mail/bench
    { ls "$m/new" "$m/cur" 2>/dev/null || true; } | grep -c '^[0-9]'
}

# wait_count COUNTER TOTAL WHAT: waits (bounded by LIMIT) until the
# command COUNTER prints at least TOTAL.
wait_count() {
    local counter=$1 total=$2 what=$3 end n
    end=$(( $(date +%s) + LIMIT ))
    while :; do
        n=$($counter)
        [ "$n" -ge "$total" ] && return 0
        [ "$(date +%s)" -ge "$end" ] && { echo "bench: $what: $n of $total" >&2; return 1; }
        sleep 0.05
    done
}

bench_postfix() {
    local port total=0 t0 el t1
    port=$(free_port)
    postfix_setup "$port" || { echo "bench: postfix setup failed" >&2; return 1; }
    for s in 1 20; do
        local n=$N1; [ "$s" = 20 ] && n=$N20
        for r in $(seq "$ROUNDS"); do
            t0=$(now)
            el=$(load "$port" "$s" "$n") || return 1
            total=$((total + n))
            wait_count postfix_delivered "$total" "postfix delivered" || return 1
            t1=$(now)
            keep_best postfix "$s" "$(rate "$n" "$el")"
            keep_best postfix_deliv "$s" "$(rate "$n" "$(echo "$t0 $t1" | awk '{ printf "%.3f", $2 - $1 }')")"
            echo "postfix  $s session(s), round $r: $n messages accepted in ${el}s; in Maildir after $(echo "$t0 $t1" | awk '{ printf "%.3f", $2 - $1 }')s"
        done
    done
}

# ---------------------------------------------------------------- postel
postel_count() {  # prints the INBOX message count of bench@example.test
    "$POSTEL_BIN" -c "$WORK/postel.conf" mailbox status bench@example.test 2>/dev/null |
        $PY "$REPO/bench/inbox_count.py"
}

# A private NSD answering the sender's SPF and DMARC lookups (postel checks
# every message it receives on smtp, as an MX must; a real MX has a local
# caching resolver, so the bench does not depend on the machine's
# upstream one).
NSD_PID=""
start_nsd() {
    local d="$WORK/nsd"
    NSD_PORT=$(free_port)
    mkdir -p "$d"
    cat >"$d/root.zone" <<ZONE
\$TTL 3600
. IN SOA ns.test. hostmaster.test. 1 3600 600 86400 3600
. IN NS ns.test.
ns.test. IN A 127.0.0.1
example.org. IN TXT "v=spf1 ip4:127.0.0.0/8 -all"
_dmarc.example.org. IN TXT "v=DMARC1; p=none"
ZONE
    cat >"$d/nsd.conf" <<CONF
server:
  ip-address: 127.0.0.1@$NSD_PORT
  username: ""
  chroot: ""
  zonesdir: "$d"
  pidfile: "$d/nsd.pid"
  database: ""
  zonelistfile: "$d/zone.list"
  xfrdfile: "$d/xfrd.state"
  xfrdir: "$d"
  logfile: "$d/nsd.log"
  server-count: 1
remote-control:
  control-enable: no
zone:
  name: "."
  zonefile: "root.zone"
CONF
    /usr/sbin/nsd -d -c "$d/nsd.conf" >/dev/null 2>&1 &
    NSD_PID=$!
    sleep 0.5
    kill -0 "$NSD_PID" 2>/dev/null || { echo "bench: nsd did not start" >&2; cat "$d/nsd.log" >&2; return 1; }
}

# Message files under mail/ (a staged message counts once its writer has
# written it; temporary names, <id>.t<hex>, do not count).
postel_files() {
    find "$WORK/postel-data/mail" -type f 2>/dev/null | grep -cE '/[0-9a-f]{16}(\.[0-9]+)?$'
}

bench_postel() {
    [ -x "$POSTEL_BIN" ] || { echo "bench: $POSTEL_BIN not built" >&2; return 1; }
    local port total=0 el n c
    port=$(free_port)
    mkdir -p "$WORK/postel-data"
    start_nsd || return 1
    cat >"$WORK/postel.conf" <<EOF
hostname = bench.example.test
data_dir = $WORK/postel-data
domains = example.test
log_level = warn
[listen]
smtp = 127.0.0.1:$port
[limits]
connections_per_ip = 200
[dns]
nameserver = 127.0.0.1:$NSD_PORT
dnssec = no
EOF
    echo "bench-password" | "$POSTEL_BIN" -c "$WORK/postel.conf" user add bench@example.test \
        >"$WORK/postel-user.log" 2>&1 || { cat "$WORK/postel-user.log" >&2; return 1; }
    "$POSTEL_BIN" -c "$WORK/postel.conf" serve >"$WORK/postel.log" 2>&1 </dev/null &
    POSTEL_PID=$!
    wait_port "$port" 10 || { echo "bench: postel did not listen on $port" >&2; tail -20 "$WORK/postel.log" >&2; return 1; }
    for s in 1 20; do
        n=$N1; [ "$s" = 20 ] && n=$N20
        for r in $(seq "$ROUNDS"); do
            t0=$(now)
            el=$(load "$port" "$s" "$n") || { tail -20 "$WORK/postel.log" >&2; return 1; }
            total=$((total + n))
            c=$(postel_count)
            if [ "$c" != "$total" ]; then
                echo "bench: postel INBOX holds ${c:-?} messages, expected $total" >&2
                return 1
            fi
            # the next round starts with these files written, as
            # Postfix's rounds start with its Maildir delivered
            wait_count postel_files "$total" "postel wrote files" || return 1
            t1=$(now)
            keep_best postel "$s" "$(rate "$n" "$el")"
            keep_best postel_files "$s" "$(rate "$n" "$(echo "$t0 $t1" | awk '{ printf "%.3f", $2 - $1 }')")"
            echo "postel   $s session(s), round $r: $n messages accepted in ${el}s; INBOX count verified ($c); all written as files after $(echo "$t0 $t1" | awk '{ printf "%.3f", $2 - $1 }')s"
        done
    done
}

# keep_best SIDE SESSIONS RATE: RESULT[SIDE,SESSIONS] = the best rate seen
keep_best() {
    local cur=${RESULT[$1,$2]:-}
    if [ -z "$cur" ] || awk -v a="$3" -v b="$cur" 'BEGIN { exit !(a > b) }'; then
        RESULT[$1,$2]=$3
    fi
}

# ---------------------------------------------------------------- main
[ -x "$SMTP_SOURCE" ] || die "$SMTP_SOURCE missing (make deps installs postfix)"
echo "SMTP benchmark: ${SIZE}-byte messages, smtp-source, one connection per message; $(nproc) cores; best of $ROUNDS rounds per side"
echo "data on $(df -P "$WORK" | awk 'NR==2 { print $1 }') ($WORK)"
status=0
# postel first: Postfix deletes each queue file once it has delivered the
# message, and on ext4 without a journal every file created in the next
# 30 s skips over those freed inodes; postel deletes nothing while it
# takes mail, so this order leaves each side only the cost of its own work.
if [ "$ONLY" != "postfix" ]; then bench_postel || status=1; stop_postel; fi
if [ "$ONLY" != "postel" ]; then bench_postfix || status=1; fi

echo
echo "results (messages/second, from wall time of smtp-source):"
for s in 1 20; do
    label="sessions"; [ "$s" = 1 ] && label="session"
    a=${RESULT[postel,$s]:-n/a}; b=${RESULT[postfix,$s]:-n/a}
    ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { if (a+0 > 0 && b+0 > 0) printf "%.2fx", a / b; else print "n/a" }')
    printf 'smtp accept %2d %-8s: postel %s msg/s, postfix %s msg/s, ratio %s\n' "$s" "$label" "$a" "$b" "$ratio"
done
for s in 1 20; do
    label="sessions"; [ "$s" = 1 ] && label="session"
    [ -n "${RESULT[postel_files,$s]:-}" ] &&
        printf 'postel  accept+write message files  %2d %-8s: %s msg/s\n' "$s" "$label" "${RESULT[postel_files,$s]}"
    [ -n "${RESULT[postfix_deliv,$s]:-}" ] &&
        printf 'postfix accept+deliver to Maildir %2d %-8s: %s msg/s\n' "$s" "$label" "${RESULT[postfix_deliv,$s]}"
done
exit $status
