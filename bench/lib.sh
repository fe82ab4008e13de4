# Shell helpers shared by bench/*_bench.sh (sourced; needs PY set).

die() { echo "bench: $*" >&2; exit 1; }

free_port() {
    $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() {  # PORT SECONDS: succeeds once 127.0.0.1:PORT accepts connections
    $PY - "$1" "$2" <<'PYEOF'
import socket, sys, time
port, limit = int(sys.argv[1]), float(sys.argv[2])
end = time.time() + limit
while time.time() < end:
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)
PYEOF
}

now() { date +%s.%N; }

rate() { awk -v n="$1" -v t="$2" 'BEGIN { if (t > 0) printf "%.1f", n / t; else print "n/a" }'; }
