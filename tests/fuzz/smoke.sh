#!/bin/sh
# Runs every fuzz target for a few seconds on its seed corpus.
dir=$1; secs=${2:-5}; [ -n "$secs" ] || secs=5
rc=0
for t in "$dir"/fuzz_*; do
  n=$(basename "$t"); corpus=tests/fuzz/corpus/${n#fuzz_}
  mkdir -p "$corpus" build-fuzz/work/$n
  echo "fuzz: $n for ${secs}s"
  if ! "$t" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 \
       build-fuzz/work/$n "$corpus" >build-fuzz/work/$n.log 2>&1; then
    echo "fuzz: $n FAILED"; tail -n 40 build-fuzz/work/$n.log; rc=1
  fi
done
exit $rc
