#!/bin/bash
# DKIM speed: signatures and verifications per second of a 10 KB message
# with postel's engine (bench/dkim_speed.c, linked against libpostel.a),
# beside the raw RSA-2048 and Ed25519 sign/verify rates of `openssl speed`
# measured in the same run.  One thread each; "% of raw" is postel's rate
# over openssl's.  postel's figure includes the work DKIM adds to the raw
# signature (canonicalizing and hashing the 10 KB body and the header,
# building or parsing the DKIM-Signature field and, to verify, the key
# record), so it can only approach the raw rate; for RSA verification,
# which costs ~20 us raw, that fixed work weighs most.
#
# Of that work, SHA-256 over the body cannot be skipped: the body hash is
# what bh= is.  So `openssl speed -bytes 10240 sha256` is measured too, and
# each row also prints its ceiling, raw op time / (raw op time + SHA-256 of
# 10 KB): the % of raw postel would reach if everything else it does cost
# nothing.
#
#   BUILD                  build directory holding libpostel.a (default build)
#   DKIM_BENCH_SECONDS     seconds per measurement (default 1)
#   DKIM_BENCH_ROUNDS      alternating rounds, best of each side (default 3)
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
BUILD=${BUILD:-build}
SECS=${DKIM_BENCH_SECONDS:-1}
ROUNDS=${DKIM_BENCH_ROUNDS:-3}
LIB=$BUILD/libpostel.a
if [ ! -f "$LIB" ]; then
    echo "dkim bench: $LIB is missing (build postel first)"
    exit 1
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# The same libraries the Makefile links with.
PKGS=$(awk '/^PKGS/ {on = 1; sub(/^PKGS *:= */, "")} on {cont = sub(/\\$/, ""); print; if (!cont) exit}' Makefile)
# shellcheck disable=SC2086
if ! cc -std=c11 -D_GNU_SOURCE -O2 -g -Isrc -I"$BUILD" $(pkg-config --cflags $PKGS) \
        -o "$TMP/dkim_speed" bench/dkim_speed.c "$LIB" $(pkg-config --libs $PKGS) -lpthread -lm; then
    echo "dkim bench: cannot build bench/dkim_speed.c"
    exit 1
fi
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$TMP/rsa.pem" 2>/dev/null &&
    openssl genpkey -algorithm ED25519 -out "$TMP/ed.pem" 2>/dev/null || {
    echo "dkim bench: openssl genpkey failed"
    exit 1
}

# keep ARRAY KEY VALUE: ARRAY[KEY] = max(ARRAY[KEY], VALUE)
keep() {
    local -n arr=$1
    if [ -z "${arr[$2]:-}" ] || awk -v a="$3" -v b="${arr[$2]}" 'BEGIN { exit !(a > b) }'; then
        arr[$2]=$3
    fi
}

# Rounds alternate openssl and postel, and each side keeps its best rate
# per row, so a noisy moment on the machine does not land on one side only.
declare -A raw postel
for round in $(seq "$ROUNDS"); do
    openssl speed -seconds "$SECS" rsa2048 ed25519 > "$TMP/speed.txt" 2>/dev/null
    # "rsa 2048 bits 0.000249s 0.000017s   4009.0  58436.0"
    read -r rs rv < <(awk '/^rsa 2048 bits/ {print $(NF-1), $NF}' "$TMP/speed.txt")
    # " 253 bits EdDSA (Ed25519)   0.0000s   0.0001s  25543.9   9703.1"
    read -r es ev < <(awk '/EdDSA \(Ed25519\)/ {print $(NF-1), $NF}' "$TMP/speed.txt")
    if [ -z "${rs:-}" ] || [ -z "${es:-}" ]; then
        echo "dkim bench: cannot read openssl speed's output:"
        cat "$TMP/speed.txt"
        exit 1
    fi
    keep raw rsa2048.sign "$rs"; keep raw rsa2048.verify "$rv"
    keep raw ed25519.sign "$es"; keep raw ed25519.verify "$ev"
    for algo in rsa2048 ed25519; do
        key=$TMP/rsa.pem
        [ "$algo" = ed25519 ] && key=$TMP/ed.pem
        out=$("$TMP/dkim_speed" "$key" "$SECS") || { echo "dkim bench: dkim_speed $algo failed"; exit 1; }
        keep postel "$algo.sign" "$(awk '$1 == "sign" {print $2}' <<<"$out")"
        keep postel "$algo.verify" "$(awk '$1 == "verify" {print $2}' <<<"$out")"
    done
done
raw_rsa_sign=${raw[rsa2048.sign]} raw_rsa_verify=${raw[rsa2048.verify]}
raw_ed_sign=${raw[ed25519.sign]} raw_ed_verify=${raw[ed25519.verify]}
echo "openssl speed rsa2048 ed25519 ($(openssl version | cut -d' ' -f1-2)) and postel, ${ROUNDS} alternating rounds of ${SECS} s, best of each"
openssl speed -seconds "$SECS" -bytes 10240 sha256 > "$TMP/sha.txt" 2>/dev/null
# "sha256         1761439.29k" (1000s of bytes per second)
sha_kbs=$(awk '$1 == "sha256" {v = $NF; sub(/k$/, "", v); print v}' "$TMP/sha.txt")
if [ -z "${sha_kbs:-}" ]; then
    echo "dkim bench: cannot read openssl speed's sha256 output:"
    cat "$TMP/sha.txt"
    exit 1
fi
sha_us=$(awk -v k="$sha_kbs" 'BEGIN { printf "%.2f", 10240 / (k * 1000) * 1e6 }')
echo "openssl speed -bytes 10240 sha256: ${sha_us} us per 10 KB (the body hash every signature and verification needs)"

pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b > 0 ? 100 * a / b : 0) }'; }
# raw op time / (raw op time + SHA-256 of 10 KB), in %, from the raw rate.
ceiling() { awk -v r="$1" -v s="$sha_us" 'BEGIN { t = 1e6 / r; printf "%.1f", 100 * t / (t + s) }'; }
line() {
    printf "dkim %-7s %-6s 10 KB message: postel %8.0f/s   openssl raw %8.0f/s   %5s%% of raw   (ceiling %s%%)\n" \
        "$1" "$2" "$3" "$4" "$(pct "$3" "$4")" "$(ceiling "$4")"
}
line rsa2048 sign "${postel[rsa2048.sign]}" "$raw_rsa_sign"
line rsa2048 verify "${postel[rsa2048.verify]}" "$raw_rsa_verify"
line ed25519 sign "${postel[ed25519.sign]}" "$raw_ed_sign"
line ed25519 verify "${postel[ed25519.verify]}" "$raw_ed_verify"
printf "dkim ratio postel/raw: rsa2048 sign %s%% verify %s%%, ed25519 sign %s%% verify %s%% (goal 85%%)\n" \
    "$(pct "${postel[rsa2048.sign]}" "$raw_rsa_sign")" "$(pct "${postel[rsa2048.verify]}" "$raw_rsa_verify")" \
    "$(pct "${postel[ed25519.sign]}" "$raw_ed_sign")" "$(pct "${postel[ed25519.verify]}" "$raw_ed_verify")"
printf "dkim ceiling with the body's SHA-256 (%s us): rsa2048 sign %s%% verify %s%%, ed25519 sign %s%% verify %s%%\n" \
    "$sha_us" "$(ceiling "$raw_rsa_sign")" "$(ceiling "$raw_rsa_verify")" \
    "$(ceiling "$raw_ed_sign")" "$(ceiling "$raw_ed_verify")"
