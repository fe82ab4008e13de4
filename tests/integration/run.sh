#!/bin/sh
# Integration tests: postel started on free loopback ports with a temporary
# data dir, spoken to by real clients (smtplib, swaks, curl, raw sockets).
#   POSTEL_BIN   the binary under test (default ./postel)
# Extra arguments go to pytest (e.g. -k smtp_errors, -x, -v).
# pytest exit 5 (no tests collected) counts as a failure.
cd "$(dirname "$0")/../.." || exit 1
: "${POSTEL_BIN:=$PWD/postel}"
case "$POSTEL_BIN" in /*) ;; *) POSTEL_BIN="$PWD/$POSTEL_BIN" ;; esac
export POSTEL_BIN
if [ ! -x "$POSTEL_BIN" ]; then
    echo "integration: $POSTEL_BIN is not an executable (run make)" >&2
    exit 1
fi
/usr/bin/python3 -m pytest -q -p no:cacheprovider -rfEs tests/integration "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "integration: pytest collected no tests" >&2
    exit 1
fi
exit "$rc"
