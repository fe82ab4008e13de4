#!/bin/bash
# make bench: every benchmark, each measuring postel and its peer (Postfix,
# Dovecot, MailDev, openssl speed) in the same run and printing the ratio.
# Each one is a script bench/NAME_bench.{sh,py} that prints its own lines;
# the summary at the end repeats every line that holds a ratio.
#
#   BENCH_SKIP   space-separated names to leave out (e.g. "pop3 capture")
#   BENCH_ONLY_SET  space-separated names to run (default: all)
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
export POSTEL_BIN=${POSTEL_BIN:-$PWD/postel}
ORDER="smtp filter queue pop3 imap dkim capture"
SKIP=" ${BENCH_SKIP:-} "
ONLY=${BENCH_ONLY_SET:-$ORDER}
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
status=0
for name in $ORDER; do
    case " $ONLY " in *" $name "*) ;; *) continue ;; esac
    case "$SKIP" in *" $name "*) continue ;; esac
    script=""
    for ext in sh py; do
        [ -f "bench/${name}_bench.$ext" ] && script="bench/${name}_bench.$ext"
    done
    [ -n "$script" ] || continue
    echo "=================== $name ($script)"
    if [ "${script##*.}" = py ]; then
        /usr/bin/python3 "$script" 2>&1 | tee -a "$LOG"
    else
        bash "$script" 2>&1 | tee -a "$LOG"
    fi
    rc=${PIPESTATUS[0]}
    [ "$rc" = 0 ] || { echo "bench: $name exited $rc"; status=1; }
done
echo
echo "=================== summary (ratios: postel / peer)"
grep -E 'ratio|% of' "$LOG" || echo "(no ratios)"
exit $status
