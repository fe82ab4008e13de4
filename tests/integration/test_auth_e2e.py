"""SPF, DKIM and DMARC end to end: a real postel receives mail on its smtp
port while a real authoritative DNS server (NSD on 127.0.0.1) serves the
senders' zones; the verdicts are read back from the Authentication-Results
field of the stored copies, from the reply to DATA (DMARC reject) and from
the mailbox the message landed in (DMARC quarantine: Junk).  Also the DMARC
aggregate reports: results of received mail, then the report window passes,
then reports arrive in a local mailbox and at a receiving MTA through the
outbound queue (gzip attachment, appendix C XML, counts checked), with the
external-destination check of RFC 7489 7.1, and postel's DKIM signature on
the report verified by python3-dkim over the same DNS.

The client connects from 127.0.0.1, so SPF judges that address."""
import base64
import email
import email.policy
import gzip
import os
import re
import shutil
import signal
import smtplib
import subprocess
import time
import xml.etree.ElementTree as ET

import dkim
import nacl.encoding
import nacl.signing
import pytest
from dnslib import DNSRecord

import harness
from fakemta import FakeMTA

NSD = shutil.which("nsd") or "/usr/sbin/nsd"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
RCPT = "alice@example.test"
RUA_LOCAL = "dmarc-rua@example.test"
REPORT_INTERVAL = 4


# ------------------------------------------------------------ keys and zone

def rsa_key(path):
    subprocess.run([OPENSSL, "genrsa", "-out", str(path), "2048"], check=True, capture_output=True)
    der = subprocess.run([OPENSSL, "rsa", "-in", str(path), "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    return path.read_bytes(), "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def ed25519_key():
    sk = nacl.signing.SigningKey.generate()
    pub = sk.verify_key.encode(encoder=nacl.encoding.Base64Encoder).decode()
    return base64.b64encode(bytes(sk)), "v=DKIM1; k=ed25519; p=" + pub


def txt(value):
    """A zone-file TXT rdata: strings of at most 255 octets."""
    parts = [value[i:i + 250] for i in range(0, len(value), 250)] or [""]
    return "( " + " ".join('"%s"' % p.replace('"', '\\"') for p in parts) + " )"


def zone_text(keys, mta_ip, postel_keys):
    rr = [
        ("@", "SOA", "ns.test. hostmaster.test. 1 3600 600 86400 60"),
        ("@", "NS", "ns.test."),
        ("ns", "A", "127.0.0.1"),
        # SPF
        ("spf-pass", "TXT", txt("v=spf1 ip4:127.0.0.1 -all")),
        ("spf-fail", "TXT", txt("v=spf1 ip4:192.0.2.1 -all")),
        ("spf-soft", "TXT", txt("v=spf1 ip4:192.0.2.1 ~all")),
        # DKIM keys (no SPF, no DMARC at dk.test)
        ("s1._domainkey.dk", "TXT", txt(keys["rsa"][1])),
        ("e1._domainkey.dk", "TXT", txt(keys["ed"][1])),
        # revoked key: empty p=
        ("revoked._domainkey.dk", "TXT", txt("v=DKIM1; k=rsa; p=")),
        # DMARC with reject; mail.dm.test is a relaxed-aligned subdomain
        ("_dmarc.dm", "TXT", txt("v=DMARC1; p=reject")),
        ("s1._domainkey.mail.dm", "TXT", txt(keys["rsa"][1])),
        ("mail.dm", "TXT", txt("v=spf1 ip4:127.0.0.1 -all")),
        ("dm", "TXT", txt("v=spf1 ip4:192.0.2.1 -all")),
        # quarantine
        ("_dmarc.q", "TXT", txt("v=DMARC1; p=quarantine")),
        ("q", "TXT", txt("v=spf1 -all")),
        # strict alignment: a subdomain signs and passes SPF, yet DMARC fails
        ("_dmarc.strict", "TXT", txt("v=DMARC1; p=quarantine; adkim=s; aspf=s")),
        ("s1._domainkey.mail.strict", "TXT", txt(keys["rsa"][1])),
        ("mail.strict", "TXT", txt("v=spf1 ip4:127.0.0.1 -all")),
        # aggregate reports: three rua addresses, two authorized (7.1)
        ("_dmarc.rep", "TXT", txt("v=DMARC1; p=none; rua=mailto:%s,mailto:agg@rr.test,"
                                  "mailto:nobody@unauth.test" % RUA_LOCAL)),
        ("s1._domainkey.rep", "TXT", txt(keys["rsa"][1])),
        ("rep.test._report._dmarc.example", "TXT", txt("v=DMARC1")),
        ("rep.test._report._dmarc.rr", "TXT", txt("v=DMARC1;")),
        ("rr", "MX", "10 mx.rr.test."),
        ("mx.rr", "A", mta_ip),
        ("unauth", "MX", "10 mx.rr.test."),
    ]
    for name, value in postel_keys.items():
        rr.append((name, "TXT", txt(value)))
    lines = ["$ORIGIN test.", "$TTL 60"]
    lines += ["%s IN %s %s" % r for r in rr]
    return "\n".join(lines) + "\n"


class NSDServer:
    """NSD serving the zone "test." on 127.0.0.1:port (foreground, -d)."""

    def __init__(self, directory, zone):
        self.dir = directory
        self.port = harness.free_port()
        (directory / "test.zone").write_text(zone)
        conf = directory / "nsd.conf"
        conf.write_text("\n".join([
            "server:",
            "  ip-address: 127.0.0.1@%d" % self.port,
            "  port: %d" % self.port,
            '  username: ""',
            '  chroot: ""',
            '  zonesdir: "%s"' % directory,
            '  pidfile: "%s/nsd.pid"' % directory,
            '  database: ""',
            '  xfrdfile: "%s/xfrd.state"' % directory,
            '  zonelistfile: "%s/zone.list"' % directory,
            '  logfile: "%s/nsd.log"' % directory,
            "  server-count: 1",
            "  verbosity: 1",
            "remote-control:",
            "  control-enable: no",
            "zone:",
            '  name: "test"',
            '  zonefile: "test.zone"',
        ]) + "\n")
        self.proc = subprocess.Popen([NSD, "-d", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        end = time.time() + 10
        while True:
            try:
                if self.query("ns.test", "A"):
                    break
            except Exception:
                pass
            if self.proc.poll() is not None or time.time() > end:
                log = (directory / "nsd.log").read_text() if (directory / "nsd.log").exists() else ""
                self.stop()
                raise AssertionError("nsd did not start:\n" + log)
            time.sleep(0.1)

    def query(self, name, qtype):
        reply = DNSRecord.parse(DNSRecord.question(name, qtype).send("127.0.0.1", self.port,
                                                                    timeout=2))
        return reply.rr

    def txt(self, name, timeout=5):
        """dkimpy's dnsfunc: the TXT strings of name joined, as bytes."""
        if isinstance(name, bytes):
            name = name.decode()
        for r in self.query(name.rstrip("."), "TXT"):
            if r.rtype == 16:
                return b"".join(r.rdata.data)
        return b""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    return {"rsa": rsa_key(d / "rsa.pem"), "ed": ed25519_key()}


@pytest.fixture(scope="module")
def env(tmp_path_factory, keys):
    """(server, nsd, mta): postel with its keys published in NSD's zone."""
    mta_ip = "127.0.0.2"
    mta_port = None
    for _ in range(50):
        p = harness.free_port()
        if harness.port_is_free(p, mta_ip):
            mta_port = p
            break
    mta = FakeMTA(mta_ip, mta_port).start()
    srv = harness.Server(tmp_path_factory.mktemp("postel"), {
        "delivery": {"port": str(mta_port)},
        "auth": {"plaintext_loopback": "yes"},
        "dmarc": {"report_interval": "%ds" % REPORT_INTERVAL, "org_name": "Postel E2E"},
    })
    for addr in (RCPT, RUA_LOCAL):
        srv.user_add(addr, "Secret-pw-1")
    # postel's own keys for the report's From domain (example.test)
    out = srv.cli("dkim", "keygen", "example.test").stdout.decode()
    postel_keys = {}
    for m in re.finditer(r'^(\S+)\.test\.\s+IN\s+TXT\s+\(\s*(.*?)\s*\)\s*$', out, re.M):
        postel_keys[m.group(1)] = "".join(re.findall(r'"([^"]*)"', m.group(2)))
    assert postel_keys, out
    nsd = NSDServer(tmp_path_factory.mktemp("nsd"), zone_text(keys, mta_ip, postel_keys))
    srv.update_config({"dns": {"nameserver": "127.0.0.1:%d" % nsd.port, "dnssec": "no"}})
    srv.write_config()
    try:
        srv.start()
    except BaseException:
        nsd.stop()
        mta.stop()
        raise
    yield srv, nsd, mta
    errors = harness.stop_all([srv])
    nsd.stop()
    mta.stop()
    assert not errors, errors


# ------------------------------------------------------------ helpers

def message(token, from_addr, subject=None, body=None, to=RCPT):
    subject = subject or "test " + token
    body = body or "Hello from %s.\r\nThe token is %s.\r\n" % (from_addr, token)
    return ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%s@e2e.test>\r\n"
            "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n%s" % (
                from_addr, to, subject, token, body)).encode()


def sign(msg, domain, selector, key, ed=False):
    sig = dkim.sign(msg, selector.encode(), domain.encode(), key,
                    signature_algorithm=b"ed25519-sha256" if ed else b"rsa-sha256",
                    include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    return sig + msg


def send(srv, mail_from, msg, helo="client.test"):
    """Sends over smtp; returns (code, text) of the reply to the end of data."""
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], local_hostname=helo, timeout=30) as c:
        c.ehlo()
        code, text = c.mail(mail_from)
        assert code == 250, (code, text)
        code, text = c.rcpt(RCPT)
        assert code == 250, (code, text)
        code, text = c.data(msg)
        return code, text.decode(errors="replace")


def stored(srv, token, mailbox="INBOX"):
    found = srv.find(RCPT, token, mailbox)
    assert len(found) == 1, "expected the message in %s, found %d" % (mailbox, len(found))
    return found[0]


def authres(msg):
    """The (only) Authentication-Results value, unfolded."""
    values = harness.header_values(msg, "Authentication-Results")
    assert len(values) == 1, values
    assert values[0].startswith("mx.example.test;"), values[0]
    return values[0]


def result(ar, method):
    """Every 'method=result ...' clause of an A-R value."""
    return [c.strip() for c in ar.split(";")[1:] if c.strip().startswith(method + "=")]


def deliver(srv, mail_from, msg, token, mailbox="INBOX"):
    code, text = send(srv, mail_from, msg)
    assert code == 250, (code, text)
    return authres(stored(srv, token, mailbox))


# ------------------------------------------------------------ SPF

@pytest.mark.parametrize("domain,expect", [("spf-pass.test", "pass"), ("spf-fail.test", "fail"),
                                           ("spf-soft.test", "softfail"),
                                           ("no-such-domain.test", "none")])
def test_spf_on_received_mail(env, domain, expect):
    srv, _, _ = env
    t = harness.token("spf")
    ar = deliver(srv, "bounce@" + domain, message(t, "user@" + domain), t)
    spf = result(ar, "spf")
    assert len(spf) == 1 and spf[0].startswith("spf=%s " % expect), ar
    assert "smtp.mailfrom=bounce@%s" % domain in spf[0] or "smtp.mailfrom=%s" % domain in spf[0], ar


def test_spf_received_spf_field(env):
    srv, _, _ = env
    t = harness.token("rspf")
    send(srv, "bounce@spf-fail.test", message(t, "user@spf-fail.test"))
    got = harness.header_values(stored(srv, t), "Received-SPF")
    assert len(got) == 1 and got[0].lower().startswith("fail"), got
    assert "client-ip=127.0.0.1" in got[0], got


# ------------------------------------------------------------ DKIM

@pytest.mark.parametrize("alg", ["rsa", "ed"])
def test_dkim_pass(env, keys, alg):
    srv, _, _ = env
    t = harness.token("dk")
    sel = "s1" if alg == "rsa" else "e1"
    msg = sign(message(t, "user@dk.test"), "dk.test", sel, keys[alg][0], ed=alg == "ed")
    ar = deliver(srv, "bounce@dk.test", msg, t)
    dk = result(ar, "dkim")
    assert len(dk) == 1 and dk[0].startswith("dkim=pass"), ar
    assert "header.d=dk.test" in dk[0] and "header.s=%s" % sel in dk[0], ar
    assert ("header.a=ed25519-sha256" if alg == "ed" else "header.a=rsa-sha256") in dk[0], ar


def test_dkim_body_altered(env, keys):
    srv, _, _ = env
    t = harness.token("dkb")
    msg = sign(message(t, "user@dk.test"), "dk.test", "s1", keys["rsa"][0])
    msg = msg.replace(b"The token is", b"The token was")
    dk = result(deliver(srv, "bounce@dk.test", msg, t), "dkim")
    assert len(dk) == 1 and dk[0].startswith("dkim=fail") and "header.d=dk.test" in dk[0], dk


def test_dkim_header_altered(env, keys):
    srv, _, _ = env
    t = harness.token("dkh")
    msg = sign(message(t, "user@dk.test", subject="original " + t), "dk.test", "s1", keys["rsa"][0])
    msg = msg.replace(b"Subject: original", b"Subject: changed")
    dk = result(deliver(srv, "bounce@dk.test", msg, t), "dkim")
    assert len(dk) == 1 and dk[0].startswith("dkim=fail"), dk


def test_dkim_two_signatures_each_judged(env, keys):
    srv, _, _ = env
    t = harness.token("dk2")
    msg = message(t, "user@dk.test")
    msg = sign(sign(msg, "dk.test", "s1", keys["rsa"][0]), "dk.test", "e1", keys["ed"][0], ed=True)
    dk = result(deliver(srv, "bounce@dk.test", msg, t), "dkim")
    assert sorted(d.split()[0] for d in dk) == ["dkim=pass", "dkim=pass"], dk
    assert {re.search(r"header\.s=(\S+)", d).group(1) for d in dk} == {"s1", "e1"}, dk


@pytest.mark.parametrize("selector,expect", [("missing", "permerror"), ("revoked", "permerror")])
def test_dkim_key_missing_or_revoked(env, keys, selector, expect):
    srv, _, _ = env
    t = harness.token("dkm")
    msg = sign(message(t, "user@dk.test"), "dk.test", selector, keys["rsa"][0])
    dk = result(deliver(srv, "bounce@dk.test", msg, t), "dkim")
    assert len(dk) == 1 and dk[0].startswith("dkim=%s" % expect), dk
    assert "header.s=%s" % selector in dk[0], dk


def test_dkim_key_lookup_fails_temporarily(env, keys):
    """A key under a zone NSD does not serve (it answers REFUSED, the
    resolver SERVFAIL): a transient error, not a verdict on the key."""
    srv, _, _ = env
    t = harness.token("dkt")
    msg = sign(message(t, "user@dk.test"), "unserved.invalid", "s1", keys["rsa"][0])
    dk = result(deliver(srv, "bounce@dk.test", msg, t), "dkim")
    assert len(dk) == 1 and dk[0].startswith("dkim=temperror"), dk
    assert "header.d=unserved.invalid" in dk[0], dk


# ------------------------------------------------------------ DMARC

def test_dmarc_pass_relaxed_dkim_subdomain(env, keys):
    """From dm.test (p=reject), signed by mail.dm.test, envelope from a
    domain whose SPF fails: DKIM's relaxed alignment alone passes DMARC."""
    srv, _, _ = env
    t = harness.token("dmp")
    msg = sign(message(t, "user@dm.test"), "mail.dm.test", "s1", keys["rsa"][0])
    ar = deliver(srv, "bounce@dm.test", msg, t)
    assert result(ar, "spf")[0].startswith("spf=fail"), ar
    assert result(ar, "dkim")[0].startswith("dkim=pass") and "header.d=mail.dm.test" in ar, ar
    dm = result(ar, "dmarc")
    assert len(dm) == 1 and dm[0].startswith("dmarc=pass") and "header.from=dm.test" in dm[0], ar


def test_dmarc_pass_relaxed_spf_subdomain(env):
    srv, _, _ = env
    t = harness.token("dms")
    ar = deliver(srv, "bounce@mail.dm.test", message(t, "user@dm.test"), t)
    assert result(ar, "spf")[0].startswith("spf=pass"), ar
    assert result(ar, "dmarc")[0].startswith("dmarc=pass"), ar


def test_dmarc_fail_reject(env, keys):
    srv, _, _ = env
    t = harness.token("dmr")
    # signed, but by a domain that is not aligned with From
    msg = sign(message(t, "ceo@dm.test"), "dk.test", "s1", keys["rsa"][0])
    code, text = send(srv, "bounce@dm.test", msg)
    assert code == 550 and text.startswith("5.7.1"), (code, text)
    assert srv.find(RCPT, t) == [] and srv.find(RCPT, t, "Junk") == []


def test_dmarc_fail_quarantine(env):
    srv, _, _ = env
    t = harness.token("dmq")
    code, text = send(srv, "bounce@q.test", message(t, "user@q.test"))
    assert code == 250, (code, text)
    assert srv.find(RCPT, t) == []
    ar = authres(stored(srv, t, "Junk"))
    assert result(ar, "dmarc")[0].startswith("dmarc=fail"), ar
    assert result(ar, "spf")[0].startswith("spf=fail"), ar


def test_dmarc_strict_misalignment(env, keys):
    """adkim=s, aspf=s: mail.strict.test passes DKIM and SPF, but neither
    is the From domain itself, so DMARC fails (quarantine)."""
    srv, _, _ = env
    t = harness.token("dmx")
    msg = sign(message(t, "user@strict.test"), "mail.strict.test", "s1", keys["rsa"][0])
    code, text = send(srv, "bounce@mail.strict.test", msg)
    assert code == 250, (code, text)
    ar = authres(stored(srv, t, "Junk"))
    assert result(ar, "spf")[0].startswith("spf=pass"), ar
    assert result(ar, "dkim")[0].startswith("dkim=pass") and "header.d=mail.strict.test" in ar, ar
    assert result(ar, "dmarc")[0].startswith("dmarc=fail"), ar


def message_check_runs(srv, since):
    return re.findall(r"event=message_checks run=(\w+)", srv.log_text()[since:])


def test_cached_checks_run_on_the_loop_with_the_same_verdicts(env, keys):
    """The end-of-data checks run on the pool while DNS answers must be
    fetched, and on the session's loop once every answer is cached: both
    give the same Authentication-Results, the same DMARC refusal and the
    same Junk filing."""
    srv, _, _ = env
    srv.restart()  # an empty DNS cache: the first attempt of each case asks
    cases = [
        ("pass", "bounce@mail.dm.test", lambda t: sign(message(t, "user@dm.test"), "dm.test", "s1",
                                                          keys["rsa"][0]), 250, "INBOX"),
        ("reject", "bounce@dm.test", lambda t: sign(message(t, "ceo@dm.test"), "dk.test", "s1",
                                                     keys["rsa"][0]), 550, None),
        ("quarantine", "bounce@q.test", lambda t: message(t, "user@q.test"), 250, "Junk"),
    ]
    for name, sender, make, want, mailbox in cases:
        ars, runs = [], []
        for attempt in range(3):
            t = harness.token("loop" + name)
            since = len(srv.log_text())
            code, text = send(srv, sender, make(t))
            assert code == want, (name, attempt, code, text)
            runs += message_check_runs(srv, since)
            if mailbox is None:
                assert text.startswith("5.7.1"), text
                assert srv.find(RCPT, t) == [] and srv.find(RCPT, t, "Junk") == []
                continue
            ar = authres(stored(srv, t, mailbox))
            ars.append(re.sub(r"header\.b=\S+", "", ar))
        # the first attempt had to ask, the last found every answer cached
        assert runs[0] == "pool" and runs[-1] == "loop", (name, runs)
        assert all(a == ars[0] for a in ars), (name, ars)


def test_forged_authres_removed(env):
    srv, _, _ = env
    t = harness.token("forge")
    msg = (b"Authentication-Results: mx.example.test; dmarc=pass header.from=q.test\r\n"
           + message(t, "user@q.test"))
    send(srv, "bounce@q.test", msg)
    got = stored(srv, t, "Junk")
    ar = authres(got)      # exactly one: ours
    assert "dmarc=fail" in ar, ar


# ------------------------------------------------------------ aggregate reports

def report_xml(msg_bytes):
    """(filename, root element) of the gzipped XML attachment."""
    m = email.message_from_bytes(msg_bytes, policy=email.policy.default)
    parts = [p for p in m.walk() if p.get_content_type() == "application/gzip"]
    assert len(parts) == 1, m.get_content_type()
    data = gzip.decompress(parts[0].get_payload(decode=True))
    return parts[0].get_filename(), ET.fromstring(data), m


def rows(root):
    out = []
    for rec in root.findall("record"):
        row = rec.find("row")
        pe = row.find("policy_evaluated")
        out.append({
            "ip": row.findtext("source_ip"), "count": int(row.findtext("count")),
            "disposition": pe.findtext("disposition"), "dkim": pe.findtext("dkim"),
            "spf": pe.findtext("spf"),
            "header_from": rec.find("identifiers").findtext("header_from"),
            "auth_dkim": [(d.findtext("domain"), d.findtext("selector"), d.findtext("result"))
                          for d in rec.find("auth_results").findall("dkim")],
            "auth_spf": [(s.findtext("domain"), s.findtext("result"))
                         for s in rec.find("auth_results").findall("spf")],
        })
    return out


def test_aggregate_report_sent(env, keys):
    srv, nsd, mta = env
    sent_pass, sent_fail = 3, 2
    for i in range(sent_pass):
        t = harness.token("rp")
        msg = sign(message(t, "user@rep.test"), "rep.test", "s1", keys["rsa"][0])
        deliver(srv, "bounce@other-sender.test", msg, t)
    for i in range(sent_fail):
        t = harness.token("rf")
        deliver(srv, "bounce@rep.test", message(t, "user@rep.test"), t)
    # the window closes within REPORT_INTERVAL; the service looks every second
    deadline = time.time() + 30 + REPORT_INTERVAL
    local, remote = [], []
    totals = lambda msgs: sum(r["count"] for m in msgs for r in rows(report_xml(m)[1]))
    while time.time() < deadline:
        local = [m for m in srv.messages(RUA_LOCAL) if b"Report Domain: rep.test" in m]
        remote = [m.data for m in mta.messages if b"Report Domain: rep.test" in m.data]
        if totals(local) >= sent_pass + sent_fail and totals(remote) >= sent_pass + sent_fail:
            break
        time.sleep(0.5)
    assert local and remote, "no report arrived:\n" + srv.log_tail(30)
    for msgs in (local, remote):
        all_rows = [r for m in msgs for r in rows(report_xml(m)[1])]
        assert sum(r["count"] for r in all_rows) == sent_pass + sent_fail, all_rows
        assert {r["ip"] for r in all_rows} == {"127.0.0.1"}
        assert {r["header_from"] for r in all_rows} == {"rep.test"}
        passes = [r for r in all_rows if r["dkim"] == "pass"]
        fails = [r for r in all_rows if r["dkim"] == "fail"]
        assert sum(r["count"] for r in passes) == sent_pass, all_rows
        assert sum(r["count"] for r in fails) == sent_fail, all_rows
        assert all(r["auth_dkim"] == [("rep.test", "s1", "pass")] for r in passes), passes
        assert all(r["auth_dkim"] == [] and r["spf"] == "fail" for r in fails), fails
        assert all(r["disposition"] == "none" for r in all_rows), all_rows
        assert {a for r in passes for a in r["auth_spf"]} == {("other-sender.test", "none")}, passes
    name, root, m = report_xml(local[0])
    meta = root.find("report_metadata")
    assert meta.findtext("org_name") == "Postel E2E"
    assert meta.findtext("email") == "noreply-dmarc@example.test"
    begin, end = int(meta.findtext("date_range/begin")), int(meta.findtext("date_range/end"))
    assert end - begin == REPORT_INTERVAL - 1 and begin % REPORT_INTERVAL == 0, (begin, end)
    pp = root.find("policy_published")
    assert pp.findtext("domain") == "rep.test" and pp.findtext("p") == "none", ET.tostring(pp)
    assert name == "mx.example.test!rep.test!%d!%d.xml.gz" % (begin, end), name
    assert m["Subject"].startswith("Report Domain: rep.test Submitter: mx.example.test Report-ID:")
    assert m["From"].addresses[0].addr_spec == "noreply-dmarc@example.test"
    # delivered through the queue to the rua's MX
    got = [x for x in mta.messages if b"Report Domain: rep.test" in x.data]
    assert all(x.rcpt_addrs == ["agg@rr.test"] for x in got), [x.rcpt_addrs for x in got]
    assert all(x.sender == "noreply-dmarc@example.test" for x in got)
    # signed by postel with the key published in NSD: python3-dkim agrees
    assert all(dkim.verify(x.data, dnsfunc=nsd.txt) for x in got)
    # 7.1: unauth.test did not authorize reports for rep.test
    assert not any("unauth.test" in a for x in mta.messages for a in x.rcpt_addrs)
    assert re.search(r"event=dmarc_report_skip domain=rep\.test rua=nobody@unauth\.test "
                     r"why=external_destination_not_authorized", srv.log_text())


def test_postel_signed_submission_verifies_in_dkimpy(env):
    """The other direction through the live server: mail submitted by an
    authenticated user of example.test leaves signed (relaxed/relaxed, From
    over-signed) and python3-dkim verifies it against NSD."""
    srv, nsd, mta = env
    if "submission" not in srv.ports:
        pytest.skip("no submission port")
    t = harness.token("sub")
    before = len(mta.messages)
    msg = message(t, RCPT, to="someone@rr.test")
    with smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=30) as c:
        c.ehlo("client.test")
        c.login(RCPT, "Secret-pw-1")
        c.sendmail(RCPT, ["someone@rr.test"], msg)
    deadline = time.time() + 20
    got = []
    while time.time() < deadline and not got:
        got = [x for x in mta.messages[before:] if t.encode() in x.data]
        time.sleep(0.2)
    assert got, srv.log_tail(20)
    data = got[0].data
    assert re.search(rb"(?i)^DKIM-Signature:.*?c=relaxed/relaxed", data, re.M | re.S)
    assert dkim.verify(data, dnsfunc=nsd.txt), data[:800]
