#!/bin/sh
# Install every Debian package that postel's build, tests and benchmarks use.
# Idempotent and quiet: only missing packages are installed.
set -e
PKGS="build-essential pkg-config clang libclang-rt-14-dev
libevent-dev libssl-dev libsqlite3-dev sqlite3 libinih-dev libjansson-dev
libpsl-dev libidn2-dev libcrypt-dev zlib1g-dev libunbound-dev openssl
python3 python3-pytest python3-yaml python3-dkim python3-spf python3-dnslib
python3-dnspython swaks libnet-ssleay-perl libio-socket-ssl-perl curl nsd unbound rspamd postfix dovecot-imapd dovecot-pop3d chromium nodejs"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
if [ -n "$missing" ]; then
echo "deps: installing$missing"
# Packaged daemons must not start system-wide instances: tests run private ones.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# Browser tests and the capture bench: playwright-core (drives Debian's
# chromium, no browser download) and MailDev, pinned by the lock file.
cd "$(dirname "$0")/.."
if [ ! -d tests/browser/node_modules/playwright-core ] ||
   [ tests/browser/package-lock.json -nt tests/browser/node_modules/.package-lock.json ]; then
  command -v npm >/dev/null || $SUDO apt-get install -y -qq --no-install-recommends npm >/dev/null
  echo "deps: npm ci --prefix tests/browser"
  npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error >/dev/null
fi
