#!/bin/sh
# Runs each unit-test binary and sums their "N passed, N failed" lines.
passed=0; failed=0; broken=0
for t in "$@"; do
  out=$("$t" 2>&1); rc=$?
  echo "$out" | grep -E 'FAIL|passed' | sed 's/^/  /'
  line=$(echo "$out" | grep -E '[0-9]+ passed, [0-9]+ failed' | tail -n 1)
  p=$(echo "$line" | sed -E 's/.* ([0-9]+) passed.*/\1/'); f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
  [ -n "$line" ] || { echo "  $t: crashed or printed no report (rc=$rc)"; broken=$((broken+1)); continue; }
  passed=$((passed+p)); failed=$((failed+f))
  [ $rc -ne 0 ] && [ "$f" -eq 0 ] && broken=$((broken+1))
done
echo "unit: $passed passed, $((failed+broken)) failed"
[ $failed -eq 0 ] && [ $broken -eq 0 ]
