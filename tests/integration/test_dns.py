"""`postel mx DOMAIN` against a DNS responder on loopback.

Output: one line per mail host in delivery order, "PREF HOST ADDR...",
with "(implicit MX, RFC 5321 5.1)" when the domain itself stands in and
"(no address: STATUS)" for a host without addresses.  Exit codes
(sysexits.h): 0 ok, 68 no such domain or no mail host, 69 Null MX,
75 temporary DNS failure.
"""
import os
import subprocess
import time

import pytest

from dnsresponder import DNSResponder

POSTEL_BIN = os.environ.get("POSTEL_BIN") or os.path.abspath("postel")

ZONE = {
    "example.test": [{"MX": [10, "mx1.example.test"]}, {"MX": [10, "mx2.example.test"]},
                     {"MX": [20, "backup.other.test"]}, {"MX": [5, "first.example.test"]}],
    "first.example.test": [{"AAAA": "2001:db8::5"}],
    "mx1.example.test": [{"A": "192.0.2.1"}, {"AAAA": "2001:db8::1"}],
    "mx2.example.test": [{"A": "192.0.2.2"}],
    "backup.other.test": [{"CNAME": "real.other.test"}],
    "real.other.test": [{"A": "192.0.2.3"}],
    "alias.test": [{"CNAME": "hop.test"}],
    "hop.test": [{"CNAME": "example.test"}],
    "null.test": [{"MX": [0, ""]}],
    "implicit.test": [{"A": "192.0.2.9"}, {"AAAA": "2001:db8::9"}],
    "nomail.test": [{"TXT": "v=spf1 -all"}],
    "lame.test": [{"MX": [10, "gone.test"]}],
    "slow.test": ["TIMEOUT"],
    "broken.test": ["SERVFAIL"],
}


@pytest.fixture(scope="module")
def dns():
    r = DNSResponder(ZONE).start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def conf(tmp_path_factory, dns):
    d = tmp_path_factory.mktemp("dns")
    path = d / "postel.conf"
    path.write_text("data_dir = %s\n[dns]\nnameserver = 127.0.0.1:%d\ndnssec = no\n" % (d / "data", dns.port))
    return str(path)


def mx(conf, domain, *extra):
    p = subprocess.run([POSTEL_BIN, "-c", conf, "mx", domain, *extra], capture_output=True, timeout=60)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def test_sorted_with_addresses(conf):
    rc, out, err = mx(conf, "example.test")
    assert rc == 0, err
    lines = out.splitlines()
    assert len(lines) == 4, out
    assert lines[0] == "5 first.example.test 2001:db8::5"
    assert sorted(lines[1:3]) == ["10 mx1.example.test 192.0.2.1 2001:db8::1",
                                  "10 mx2.example.test 192.0.2.2"]
    # A host that is a CNAME resolves through it.
    assert lines[3] == "20 backup.other.test 192.0.2.3"


def test_equal_preference_random_order(conf):
    seen = set()
    for _ in range(16):
        rc, out, _ = mx(conf, "example.test")
        assert rc == 0
        seen.add(out.splitlines()[1].split()[1])
        if len(seen) == 2:
            break
    assert seen == {"mx1.example.test", "mx2.example.test"}


def test_cname_chain(conf):
    rc, out, err = mx(conf, "alias.test")
    assert rc == 0, err
    assert [l.split()[1] for l in out.splitlines()][0] == "first.example.test"
    assert len(out.splitlines()) == 4


def test_null_mx(conf):
    rc, out, _ = mx(conf, "null.test")
    assert rc == 69
    assert "null MX" in out and "RFC 7505" in out


def test_implicit_mx(conf):
    rc, out, err = mx(conf, "implicit.test")
    assert rc == 0, err
    assert out.strip() == "0 implicit.test 192.0.2.9 2001:db8::9 (implicit MX, RFC 5321 5.1)"


def test_no_mail_host(conf):
    rc, out, err = mx(conf, "nomail.test")
    assert rc == 68
    assert "no mail host" in err


def test_nxdomain(conf):
    rc, _, err = mx(conf, "nowhere.test")
    assert rc == 68
    assert "NXDOMAIN" in err


def test_host_without_address(conf):
    rc, out, _ = mx(conf, "lame.test")
    assert rc == 0
    assert out.strip() == "10 gone.test (no address: nxdomain)"


def test_timeout_is_temporary_and_fast(conf):
    t0 = time.monotonic()
    rc, _, err = mx(conf, "slow.test", "--timeout", "1")
    assert rc == 75, err
    assert "temporary" in err and "timeout" in err
    assert time.monotonic() - t0 < 5


def test_servfail_is_temporary(conf):
    t0 = time.monotonic()
    rc, _, err = mx(conf, "broken.test", "--timeout", "2")
    assert rc == 75, err
    assert time.monotonic() - t0 < 6


def test_bad_name_and_usage(conf):
    assert mx(conf, "a..b")[0] == 65
    p = subprocess.run([POSTEL_BIN, "-c", conf, "mx"], capture_output=True, timeout=30)
    assert p.returncode == 64
