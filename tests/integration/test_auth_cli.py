"""Sender-authentication commands against a DNS responder on loopback.

postel verify [FILE] [--ip --helo --mail-from]
    prints the Authentication-Results field the SMTP server would add
    (RFC 8601: spf, dkim per signature with header.d/header.s, dmarc with
    the policy in a comment) and Received-SPF when --ip is given.
postel dns records DOMAIN
    zone-file text (parsed here with dnslib), whose DKIM records verify
    postel-signed mail in python3-dkim.
postel check DOMAIN
    one "OK|WARN|FAIL  topic  reason" line per finding; exit 1 on any FAIL.

Messages are signed by `postel dkim sign` and by python3-dkim.
"""
import base64
import os
import re
import subprocess

import dkim
import pytest
from dnslib import QTYPE, RR

from dnsresponder import DNSResponder

POSTEL_BIN = os.environ.get("POSTEL_BIN") or os.path.abspath("postel")
DOMAIN = "example.test"
HOST = "mx.example.test"

MSG = (b"From: Alice <alice@example.test>\r\n"
       b"To: Bob <bob@receiver.test>\r\n"
       b"Subject: quarterly figures\r\n"
       b"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
       b"Message-ID: <q1@example.test>\r\n"
       b"\r\n"
       b"The figures are attached.\r\n")


def run(conf, args, input=None, check=True):
    env = dict(os.environ)
    env.pop("POSTEL_CONFIG", None)
    p = subprocess.run([POSTEL_BIN, "-c", str(conf)] + args, input=input, capture_output=True,
                       env=env, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError("postel %s: exit %d\n%s%s" % (" ".join(args), p.returncode,
                                                         p.stdout.decode(errors="replace"),
                                                         p.stderr.decode(errors="replace")))
    return p


def zone_records(text):
    """Owner name (trailing dot) -> TXT text, from zone-file lines."""
    recs = {}
    for rr in RR.fromZone(text):
        if rr.rtype == QTYPE.TXT:
            recs[str(rr.rname)] = b"".join(rr.rdata.data).decode()
    return recs


def rsa_key():
    pem = subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
                         capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubout", "-outform", "DER"], input=pem,
                         capture_output=True, check=True).stdout
    return pem, "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


class Env:
    pass


def _wired():
    p = subprocess.run([POSTEL_BIN, "verify", "--bogus-option"], capture_output=True, timeout=30)
    return b"unknown command" not in p.stderr


pytestmark = pytest.mark.skipif(not _wired(), reason="verify/dns/check not in main.c's command table yet")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("auth")
    dns = DNSResponder({}).start()
    conf = d / "postel.conf"
    conf.write_text("hostname = %s\ndata_dir = %s\ndomains = %s\n[dns]\nnameserver = 127.0.0.1:%d\n"
                    "dnssec = no\n" % (HOST, d / "data", DOMAIN, dns.port))
    out = run(conf, ["dkim", "keygen", DOMAIN, "--selector", "rsa1"]).stdout.decode()
    out += run(conf, ["dkim", "keygen", DOMAIN, "--algo", "ed25519", "--selector", "ed1"]).stdout.decode()
    # A domain whose key we hold but whose DNS publishes another one.
    run(conf, ["dkim", "keygen", "stale.test", "--selector", "old"])
    keys = zone_records(out)
    assert set(keys) == {"rsa1._domainkey.example.test.", "ed1._domainkey.example.test."}, out
    py_priv, py_rec = rsa_key()
    other_priv, other_rec = rsa_key()
    include_chain = {"l%d.test" % i: [{"TXT": "v=spf1 include:l%d.test -all" % (i + 1)}] for i in range(12)}
    zone = {
        DOMAIN: [{"MX": [10, HOST]}, {"TXT": "v=spf1 ip4:192.0.2.0/24 -all"}],
        HOST: [{"A": "192.0.2.10"}],
        "10.2.0.192.in-addr.arpa": [{"PTR": HOST}],
        "rsa1._domainkey.example.test": [{"TXT": keys["rsa1._domainkey.example.test."]}],
        "ed1._domainkey.example.test": [{"TXT": keys["ed1._domainkey.example.test."]}],
        "_dmarc.example.test": [{"TXT": "v=DMARC1; p=reject; rua=mailto:dmarc@example.test"}],
        "_mta-sts.example.test": [{"TXT": "v=STSv1; id=20240101"}],
        "_smtp._tls.example.test": [{"TXT": "v=TLSRPTv1; rua=mailto:tls@example.test"}],
        # python3-dkim signs for third.test
        "third.test": [{"TXT": "v=spf1 -all"}],
        "py._domainkey.third.test": [{"TXT": py_rec}],
        "_dmarc.third.test": [{"TXT": "v=DMARC1; p=quarantine; adkim=s"}],
        # np (DMARCbis): ghost.np.test does not exist
        "_dmarc.np.test": [{"TXT": "v=DMARC1; p=none; sp=none; np=reject"}],
        "np.test": [{"TXT": "v=spf1 -all"}],
        "real.np.test": [{"A": "192.0.2.77"}],
        # a weaker domain: no DMARC, no PTR, ?all, no MTA-STS
        "nodmarc.test": [{"MX": [10, "mx.nodmarc.test"]}, {"TXT": "v=spf1 mx ?all"}],
        "mx.nodmarc.test": [{"A": "192.0.2.20"}],
        # broken SPF setups
        "twospf.test": [{"MX": [10, HOST]}, {"TXT": "v=spf1 -all"}, {"TXT": "v=spf1 mx -all"}],
        "deepspf.test": [{"MX": [10, HOST]}, {"TXT": "v=spf1 include:l0.test -all"}],
        # our key for stale.test is not the published one
        "stale.test": [{"MX": [10, HOST]}, {"TXT": "v=spf1 mx -all"}],
        "old._domainkey.stale.test": [{"TXT": other_rec}],
        "_dmarc.stale.test": [{"TXT": "v=DMARC1; p=reject; rua=mailto:r@elsewhere.test"}],
    }
    zone.update(include_chain)
    dns.set_zone(zone)
    e = Env()
    e.conf, e.dir, e.dns, e.keys, e.py_priv = conf, d, dns, keys, py_priv
    yield e
    dns.stop()


def verify(env, msg, *args, check=True):
    p = run(env.conf, ["verify"] + list(args), input=msg, check=check)
    return p.stdout.decode()


def unfold(text):
    return re.sub(r"\r?\n[ \t]+", " ", text)


def authres(out):
    """The A-R field's methods: [(method, result, rest)], from verify's output."""
    fields = re.split(r"\n(?=\S)", out.strip())
    ar = [f for f in fields if f.startswith("Authentication-Results:")]
    assert len(ar) == 1, out
    value = unfold(ar[0])[len("Authentication-Results:"):]
    parts = [p.strip() for p in value.split(";")]
    assert parts[0] == HOST, parts
    res = []
    for p in parts[1:]:
        m = re.match(r"^([a-z0-9-]+)=([a-z]+)\s*(.*)$", p)
        assert m, p
        res.append((m.group(1), m.group(2), m.group(3)))
    return res


def methods(res, name):
    return [r for r in res if r[0] == name]


def postel_sign(env, msg):
    return run(env.conf, ["dkim", "sign"], input=msg).stdout


# ------------------------------------------------------------------ verify

def test_verify_signed_pass(env):
    signed = postel_sign(env, MSG)
    out = verify(env, signed, "--ip", "192.0.2.5", "--helo", "client.example.test",
                 "--mail-from", "alice@example.test")
    for line in out.splitlines():
        assert len(line) <= 78 or " " not in line.strip(), line
    res = authres(out)
    assert [r[0] for r in res] == ["spf", "dkim", "dkim", "dmarc"], res
    assert res[0][1] == "pass" and "smtp.mailfrom=alice@example.test" in res[0][2]
    dk = methods(res, "dkim")
    assert all(r[1] == "pass" for r in dk), dk
    assert all("header.d=example.test" in r[2] for r in dk)
    assert sorted(re.search(r"header\.s=(\S+)", r[2]).group(1) for r in dk) == ["ed1", "rsa1"]
    assert res[3][1] == "pass" and "header.from=example.test" in res[3][2] and "p=reject" in res[3][2]
    assert re.search(r"(?m)^Received-SPF: pass ", out), out


def test_verify_spf_fail_dmarc_fail(env):
    out = verify(env, MSG, "--ip", "203.0.113.5", "--helo", "evil.example", "--mail-from",
                 "alice@example.test")
    res = authres(out)
    assert methods(res, "spf")[0][1] == "fail"
    assert methods(res, "dkim") == [("dkim", "none", "(message not signed)")]
    d = methods(res, "dmarc")[0]
    assert d[1] == "fail" and "dis=reject" in d[2] and "header.from=example.test" in d[2], d
    assert re.search(r"(?m)^Received-SPF: fail ", out)


def test_verify_without_ip_has_no_spf(env):
    out = verify(env, postel_sign(env, MSG))
    res = authres(out)
    assert not methods(res, "spf") and "Received-SPF" not in out
    assert methods(res, "dmarc")[0][1] == "pass"


def test_verify_file_and_return_path(env, tmp_path):
    f = tmp_path / "msg.eml"
    f.write_bytes(b"Return-Path: <alice@example.test>\r\n" + MSG)
    out = run(env.conf, ["verify", str(f), "--ip", "192.0.2.99"]).stdout.decode()
    spf = methods(authres(out), "spf")[0]
    assert spf[1] == "pass" and "smtp.mailfrom=alice@example.test" in spf[2], spf
    assert methods(authres(out), "dmarc")[0][1] == "pass"
    p = run(env.conf, ["verify", str(tmp_path / "missing.eml")], check=False)
    assert p.returncode == 66
    p = run(env.conf, ["verify", "--ip", "not-an-ip"], input=MSG, check=False)
    assert p.returncode == 64


def test_verify_python_dkim(env):
    msg = MSG.replace(b"alice@example.test", b"carol@third.test")
    sig = dkim.sign(msg, b"py", b"third.test", env.py_priv)
    res = authres(verify(env, sig + msg))
    dk = methods(res, "dkim")[0]
    assert dk[1] == "pass" and "header.d=third.test" in dk[2] and "header.s=py" in dk[2], dk
    assert methods(res, "dmarc")[0][1] == "pass"
    tampered = (sig + msg).replace(b"figures are", b"figures were")
    res = authres(verify(env, tampered, "--ip", "203.0.113.5", "--mail-from", "carol@third.test"))
    assert methods(res, "dkim")[0][1] == "fail"
    d = methods(res, "dmarc")[0]
    assert d[1] == "fail" and "dis=quarantine" in d[2], d
    # adkim=s: d=third.test does not align with a subdomain's From.
    sub = MSG.replace(b"alice@example.test", b"carol@news.third.test")
    sig = dkim.sign(sub, b"py", b"third.test", env.py_priv)
    res = authres(verify(env, sig + sub))
    assert methods(res, "dkim")[0][1] == "pass"
    d = methods(res, "dmarc")[0]
    assert d[1] == "fail" and "header.from=news.third.test" in d[2], d


def test_verify_np_for_nonexistent_subdomain(env):
    ghost = MSG.replace(b"alice@example.test", b"x@ghost.np.test")
    d = methods(authres(verify(env, ghost, "--ip", "203.0.113.5", "--mail-from", "x@ghost.np.test")),
                "dmarc")[0]
    assert d[1] == "fail" and "np=reject" in d[2] and "dis=reject" in d[2], d
    real = MSG.replace(b"alice@example.test", b"x@real.np.test")
    d = methods(authres(verify(env, real, "--ip", "203.0.113.5", "--mail-from", "x@real.np.test")),
                "dmarc")[0]
    assert d[1] == "fail" and "dis=none" in d[2], d


def test_verify_no_dmarc_record(env):
    msg = MSG.replace(b"alice@example.test", b"dave@nodmarc.test")
    d = methods(authres(verify(env, msg, "--ip", "192.0.2.20", "--mail-from", "dave@nodmarc.test")),
                "dmarc")[0]
    assert d[1] == "none" and "header.from=nodmarc.test" in d[2], d


# -------------------------------------------------------------- dns records

def test_dns_records(env):
    out = run(env.conf, ["dns", "records", DOMAIN]).stdout.decode()
    rrs = RR.fromZone(out)
    by = {}
    for rr in rrs:
        assert str(rr.rname).endswith("."), rr
        by.setdefault((str(rr.rname), QTYPE[rr.rtype]), []).append(rr)
    assert str(by[("example.test.", "MX")][0].rdata) == "10 mx.example.test."
    assert str(by[("mx.example.test.", "A")][0].rdata) == "192.0.2.10"
    txt = {}
    for rr in rrs:
        if rr.rtype == QTYPE.TXT:
            assert all(len(s) <= 255 for s in rr.rdata.data)
            txt[str(rr.rname)] = b"".join(rr.rdata.data).decode()
    assert txt["example.test."] == "v=spf1 ip4:192.0.2.10 -all"
    assert txt["rsa1._domainkey.example.test."] == env.keys["rsa1._domainkey.example.test."]
    assert txt["ed1._domainkey.example.test."] == env.keys["ed1._domainkey.example.test."]
    assert txt["_dmarc.example.test."] == ("v=DMARC1; p=quarantine; adkim=r; aspf=r; "
                                           "rua=mailto:postmaster@example.test")
    assert re.match(r"^v=STSv1; id=[0-9a-f]{16}$", txt["_mta-sts.example.test."])
    assert txt["_smtp._tls.example.test."] == "v=TLSRPTv1; rua=mailto:postmaster@example.test"
    assert "mx: mx.example.test" in out and "mta-sts.example.test/.well-known/mta-sts.txt" in out
    for svc in ("_submission", "_submissions", "_imap", "_imaps", "_pop3s"):
        assert (svc + "._tcp.example.test.", "SRV") in by, svc
    assert str(by[("autoconfig.example.test.", "CNAME")][0].rdata) == "mx.example.test."

    # The DKIM records verify postel-signed mail in python3-dkim.
    signed = postel_sign(env, MSG)
    d = dkim.DKIM(signed)
    dnsfunc = lambda name, timeout=5: txt.get(name.decode() if isinstance(name, bytes) else name, "").encode()
    assert d.verify(idx=0, dnsfunc=dnsfunc) and d.verify(idx=1, dnsfunc=dnsfunc)


def test_dns_records_srv_ports_and_usage(env, tmp_path):
    conf = tmp_path / "srv.conf"
    conf.write_text(env.conf.read_text().replace(
        "[dns]", "[listen]\nsubmissions = 0.0.0.0:465\nimaps = 0.0.0.0:993\n[dns]"))
    out = run(conf, ["dns", "records", DOMAIN]).stdout.decode()
    srv = {str(rr.rname): str(rr.rdata) for rr in RR.fromZone(out) if rr.rtype == QTYPE.SRV}
    assert srv["_submissions._tcp.example.test."] == "0 1 465 mx.example.test."
    assert srv["_imaps._tcp.example.test."] == "0 1 993 mx.example.test."
    assert srv["_imap._tcp.example.test."] == "0 0 0 ."
    assert run(env.conf, ["dns", "records"], check=False).returncode == 64
    assert run(env.conf, ["dns", "bogus", DOMAIN], check=False).returncode == 64
    assert run(env.conf, ["dns", "records", "not a domain"], check=False).returncode == 64


# -------------------------------------------------------------------- check

def check(env, domain):
    p = run(env.conf, ["check", domain], check=False)
    lines = p.stdout.decode().splitlines()
    found = []
    for line in lines[1:-1]:
        m = re.match(r"^(OK|WARN|FAIL)\s+(\S+)\s+(.*)$", line)
        assert m, line
        found.append(m.groups())
    return p.returncode, found, p.stdout.decode()


def has(found, level, topic, text=""):
    return any(l == level and t == topic and text in r for l, t, r in found)


def test_check_good_domain(env):
    rc, found, out = check(env, DOMAIN)
    assert rc == 0, out
    assert not [f for f in found if f[0] == "FAIL"], out
    assert has(found, "OK", "mx", "1 MX record: 10 mx.example.test")
    assert has(found, "OK", "mx", "mx.example.test resolves to 192.0.2.10")
    assert has(found, "OK", "rdns", "192.0.2.10 -> mx.example.test (forward-confirmed)")
    assert has(found, "OK", "spf", "v=spf1 ip4:192.0.2.0/24 -all")
    assert has(found, "OK", "spf", "DNS lookups")
    assert has(found, "OK", "dmarc", "p=reject")
    assert has(found, "OK", "dkim", "selector rsa1 publishes our RSA key")
    assert has(found, "OK", "dkim", "selector ed1 publishes our Ed25519 key")
    assert has(found, "OK", "mta-sts") and has(found, "OK", "tls-rpt")


def test_check_missing_dmarc(env):
    rc, found, out = check(env, "nodmarc.test")
    assert rc == 1, out
    assert has(found, "FAIL", "dmarc", "no DMARC record"), out
    assert has(found, "FAIL", "rdns", "no PTR"), out
    assert has(found, "WARN", "spf", "unlisted senders get neutral"), out
    assert has(found, "WARN", "dkim", "no DKIM key"), out
    assert has(found, "WARN", "mta-sts") and has(found, "WARN", "tls-rpt"), out
    assert out.splitlines()[-1].endswith("FAIL"), out


def test_check_spf_problems(env):
    rc, found, out = check(env, "twospf.test")
    assert rc == 1 and has(found, "FAIL", "spf", "2 SPF records"), out
    rc, found, out = check(env, "deepspf.test")
    assert rc == 1 and has(found, "FAIL", "spf", "permerror"), out


def test_check_stale_dkim_and_external_rua(env):
    rc, found, out = check(env, "stale.test")
    assert rc == 1, out
    assert has(found, "FAIL", "dkim", "selector old: the published key is not the one"), out
    assert has(found, "WARN", "dmarc", "r@elsewhere.test is outside stale.test"), out


def test_check_nonexistent_domain(env):
    rc, found, out = check(env, "nowhere.test")
    assert rc == 1 and has(found, "FAIL", "mx", "does not exist"), out
    assert run(env.conf, ["check"], check=False).returncode == 64


# ------------------------------------------------------------ [dmarc] keys

def test_dmarc_config_keys(tmp_path):
    good = tmp_path / "good.conf"
    good.write_text("hostname = mx.example.org\ndata_dir = %s\n[dmarc]\nreports = no\n"
                    "report_interval = 1h\nreport_from = dmarc@example.org\n"
                    "org_name = Example Org\n" % (tmp_path / "data"))
    p = run(str(good), ["config", "check"])
    assert p.returncode == 0
    bad = tmp_path / "bad.conf"
    bad.write_text("hostname = mx.example.org\ndata_dir = %s\n[dmarc]\nreport_interval = 0s\n"
                   "report_from = nobody\nreports = maybe\nsurprise = 1\n" % (tmp_path / "data"))
    p = run(str(bad), ["config", "check"], check=False)
    err = p.stderr.decode()
    assert p.returncode == 78, (p.returncode, err)
    assert "bad.conf:4: bad report_interval '0s'" in err, err
    assert "bad.conf:5: bad report_from 'nobody'" in err, err
    assert "bad.conf:6: bad boolean 'maybe'" in err, err
    assert "bad.conf:7: unknown key 'surprise' in [dmarc]" in err, err
