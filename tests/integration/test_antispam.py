"""Anti-spam through SMTP (docs/antispam.md), against a running postel.

DNS comes from a real authoritative server: a private NSD on 127.0.0.1
serving the root zone with the test lists in it (bl.test: DNSBL with
action reject, sc.test: DNSBL scoring 6, wl.test: DNSWL accept,
rhs.test: RHSBL of domains scoring 6).  Every other name is NXDOMAIN at
once, so SPF/DKIM/DMARC never wait.  postel's libunbound forwards to it.

Loopback is not trusted here (allow_loopback = no), and clients bind to
other 127.x.y.z addresses to stand in for remote hosts; each test takes
its own /24 because greylisting and auto-allow work per /24.

Rspamd tests start Debian's rspamd with a private configuration and
check that its reject is applied, and that mail still flows (logged)
when it is stopped.
"""
import base64
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import time

import pytest

import harness
from harness import assert_reply, header_values, make_message, token

NSD = "/usr/sbin/nsd"
RSPAMD = "/usr/bin/rspamd"
MIN_DELAY = 1.0          # [greylist] min_delay in these tests
ALICE = "alice@example.test"
BOB = "bob@example.test"

# client address -> what the lists say (answers of the test zone)
ZONE_RECORDS = [
    "11.11.0.127.bl.test. A 127.0.0.2",          # DNSBL reject
    "12.11.0.127.bl.test. A 127.255.255.254",    # "query refused": never a listing
    "13.13.0.127.sc.test. A 127.0.0.2",          # scored DNSBL
    "6.12.0.127.wl.test. A 127.0.0.2",           # DNSWL accept
    "spam-domain.test.rhs.test. A 127.0.0.2",    # RHSBL
    "good.test. TXT \"v=spf1 ip4:127.0.21.0/24 -all\"",
    "mail.good.test. A 127.0.22.1",
]


class Nsd:
    """A private NSD serving one root zone on 127.0.0.1:port."""

    def __init__(self, workdir, records):
        self.dir = str(workdir)
        os.makedirs(self.dir, exist_ok=True)
        self.port = harness.free_port()
        with open(os.path.join(self.dir, "root.zone"), "w") as f:
            f.write("$TTL 60\n. IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60\n"
                    ". IN NS ns.test.\nns.test. IN A 127.0.0.1\n")
            for r in records:
                name, rest = r.split(" ", 1)
                f.write("%s IN %s\n" % (name, rest))
        d = self.dir
        with open(os.path.join(d, "nsd.conf"), "w") as f:
            f.write('server:\n  ip-address: 127.0.0.1@%d\n  username: ""\n  chroot: ""\n'
                    '  zonesdir: "%s"\n  pidfile: "%s/nsd.pid"\n  database: ""\n'
                    '  zonelistfile: "%s/zone.list"\n  xfrdfile: "%s/xfrd.state"\n'
                    '  xfrdir: "%s"\n  logfile: "%s/nsd.log"\n  server-count: 1\n'
                    '  verbosity: 1\n'
                    'remote-control:\n  control-enable: no\n'
                    'zone:\n  name: "."\n  zonefile: "root.zone"\n' % (self.port, d, d, d, d, d, d))
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([NSD, "-d", "-c", os.path.join(self.dir, "nsd.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.time() + 10
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("nsd exited: %s" % self.log())
            if self.answers():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("nsd did not answer: %s" % self.log())

    def answers(self):
        """True once a UDP query for ns.test gets an answer."""
        q = (b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
             b"\x02ns\x04test\x00\x00\x01\x00\x01")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.3)
            try:
                s.sendto(q, ("127.0.0.1", self.port))
                data = s.recv(512)
            except OSError:
                return False
        return data[:2] == b"\x12\x34" and data[7] == 1

    def log(self):
        try:
            with open(os.path.join(self.dir, "nsd.log")) as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def filter_config(nsd_port, **over):
    """The anti-spam configuration of these tests, as harness sections."""
    cfg = {
        "dns": {"nameserver": "127.0.0.1:%d" % nsd_port, "dnssec": "no"},
        "lists": {"allow_loopback": "no"},
        "greylist": {"min_delay": "%ds" % MIN_DELAY, "window": "1h", "auto_allow_after": "2"},
        "dnsbl bl": {"zone": "bl.test", "action": "reject"},
        "dnsbl sc": {"zone": "sc.test", "weight": "6"},
        "dnswl wl": {"zone": "wl.test", "action": "accept"},
        "dnsbl rhs": {"zone": "rhs.test", "type": "domain", "check": "sender, from",
                      "weight": "6"},
        "postscreen": {"fcrdns": "off", "helo": "off", "pregreet": "reject"},
        "ratelimit": {"connections_per_minute": "20", "messages_per_hour": "0",
                      "per_user_messages_per_hour": "3", "auth_failures_per_hour": "2"},
    }
    for k, v in over.items():
        cfg.setdefault(k, {}).update(v)
    return cfg


@pytest.fixture(scope="module")
def nsd(tmp_path_factory):
    if not os.access(NSD, os.X_OK):
        pytest.fail("nsd is not installed (scripts/deps.sh installs it)")
    n = Nsd(tmp_path_factory.mktemp("nsd"), ZONE_RECORDS).start()
    yield n
    n.stop()


@pytest.fixture(scope="module")
def mx(module_server, nsd):
    return module_server(filter_config(nsd.port), roles=("smtp", "submission", "imap"))


# ---- clients from other loopback addresses

def raw_from(srv, ip, role="smtp", timeout=10):
    r = harness.Raw.__new__(harness.Raw)
    r.sock = socket.create_connection(("127.0.0.1", srv.ports[role]), timeout, source_address=(ip, 0))
    r.sock.settimeout(timeout)
    r.timeout = timeout
    r.buf = b""
    r.banner = None
    return r


def smtp_from(srv, ip, role="smtp"):
    return smtplib.SMTP("127.0.0.1", srv.ports[role], timeout=10, source_address=(ip, 0))


def submit_from(srv, ip):
    """An smtplib session on submission from ip, after STARTTLS."""
    s = smtp_from(srv, ip, role="submission")
    s.ehlo("laptop.example.org")
    s.starttls(context=harness.tls_context())
    s.ehlo("laptop.example.org")
    return s


def attempt(srv, ip, sender, rcpt, msg=None):
    """One delivery attempt; returns (stage, code, enhanced-or-text) where
    stage is 'rcpt' (refused there) or 'data' (the final reply)."""
    with smtp_from(srv, ip) as s:
        s.ehlo("client.example.org")
        code, resp = s.mail(sender)
        assert code == 250, "MAIL: %d %r" % (code, resp)
        code, resp = s.rcpt(rcpt)
        if code != 250:
            return ("rcpt", code, resp.decode(errors="replace"))
        code, resp = s.data(msg or make_message(token("m"), sender=sender, to=rcpt))
        return ("data", code, resp.decode(errors="replace"))


def wait_for(pred, timeout=5.0, step=0.1):
    end = time.time() + timeout
    while True:
        v = pred()
        if v or time.time() > end:
            return v
        time.sleep(step)


# ---- greylisting

def test_greylist_first_attempt_then_pass_then_auto_allow(mx):
    ip, sender = "127.0.10.1", "news@sender-a.example"
    stage, code, text = attempt(mx, ip, sender, ALICE)
    assert (stage, code) == ("rcpt", 451), text
    assert text.startswith("4.7.1") and "Greylisted" in text, text
    # a retry before the minimum delay is still refused
    assert attempt(mx, ip, sender, ALICE)[:2] == ("rcpt", 451)
    time.sleep(MIN_DELAY + 0.3)
    tok = token("grey")
    stage, code, text = attempt(mx, ip, sender, ALICE, make_message(tok, sender=sender))
    assert (stage, code) == ("data", 250), text
    assert len(mx.find(ALICE, tok)) == 1
    # the passed triplet is remembered: no delay for the next message
    assert attempt(mx, ip, sender, ALICE)[:2] == ("data", 250)
    # a new triplet from the same network is greylisted until the network
    # has passed auto_allow_after (2) times
    sender2 = "billing@sender-b.example"
    assert attempt(mx, "127.0.10.2", sender2, BOB)[:2] == ("rcpt", 451)
    time.sleep(MIN_DELAY + 0.3)
    assert attempt(mx, "127.0.10.2", sender2, BOB)[:2] == ("data", 250)
    # two triplets passed from 127.0.10.0/24: now any sender passes at once
    stage, code, text = attempt(mx, "127.0.10.3", "new@sender-c.example", "carol@example.test")
    assert (stage, code) == ("data", 250), text
    assert "auto" in mx.log_text().lower()
    # ...but another network does not
    assert attempt(mx, "127.0.30.1", "new@sender-c.example", "carol@example.test")[:2] == ("rcpt", 451)


def test_greylist_state_survives_restart(make_server, nsd):
    srv = make_server(filter_config(nsd.port))
    ip, sender = "127.0.20.1", "once@restart.example"
    assert attempt(srv, ip, sender, ALICE)[:2] == ("rcpt", 451)
    srv.restart()
    time.sleep(MIN_DELAY + 0.3)
    stage, code, text = attempt(srv, ip, sender, ALICE)
    assert (stage, code) == ("data", 250), "the first attempt was forgotten: %s" % text
    # a triplet never seen is still greylisted after the restart
    assert attempt(srv, ip, "other@restart.example", ALICE)[:2] == ("rcpt", 451)


def test_authenticated_submission_skips_greylisting(mx):
    tok = token("sub")
    with submit_from(mx, "127.0.19.1") as s:
        assert_reply(s.login(ALICE, harness.USERS[ALICE]), 235, "2.7.0", "AUTH")
        s.mail(ALICE)
        assert_reply(s.rcpt(BOB), 250, "2.1.5", "RCPT after AUTH (no greylisting)")
        assert_reply(s.data(make_message(tok, sender=ALICE, to=BOB)), 250, "2.0.0", "DATA")
    msgs = wait_for(lambda: mx.find(BOB, tok))
    assert len(msgs) == 1
    assert not header_values(msgs[0], "X-Spam-Score"), "submitted mail must not be scored"


def test_per_user_message_rate(mx):
    # per_user_messages_per_hour = 3; dave sends 4 messages
    replies = []
    with submit_from(mx, "127.0.19.2") as s:
        s.login("dave@example.test", harness.USERS["dave@example.test"])
        for _ in range(4):
            code, resp = s.mail("dave@example.test")
            replies.append((code, resp.decode()))
            s.rset()
    assert [c for c, _ in replies[:3]] == [250, 250, 250], replies
    assert replies[3][0] == 451 and replies[3][1].startswith("4.7.1"), replies


def test_failed_auth_per_ip_blocks_the_address(mx):
    ip = "127.0.19.3"
    plain = lambda pw: base64.b64encode(b"\0" + ALICE.encode() + b"\0" + pw).decode()
    with submit_from(mx, ip) as s:
        code, resp = s.docmd("AUTH", "PLAIN " + plain(b"wrong-1"))
        assert code == 535, (code, resp)
        # the second failure reaches auth_failures_per_hour = 2 (the
        # session limit [auth] failures is 3): 421 and close
        code, resp = s.docmd("AUTH", "PLAIN " + plain(b"wrong-2"))
        assert (code, resp[:5]) == (421, b"4.7.0"), (code, resp)
    # the address is refused at connect for a while, on every listener
    for role in ("submission", "smtp"):
        r = raw_from(mx, ip, role=role)
        b = r.read_banner()
        r.close()
        assert (b.code, b.enhanced) == (421, "4.7.0"), "%s: %r" % (role, b)
    # another address is not
    r = raw_from(mx, "127.0.19.4", role="submission")
    assert r.read_banner().code == 220
    r.close()


# ---- DNS lists

def test_dnsbl_listed_client_rejected_at_connect(mx):
    r = raw_from(mx, "127.0.11.11")
    b = r.read_banner()
    assert (b.code, b.enhanced) == (554, "5.7.1"), b
    assert "bl.test" in b.text, b
    assert r.is_closed()
    assert "DNSBL_BL" in mx.log_text()


def test_dnsbl_refused_code_is_not_a_listing(mx):
    # 127.255.255.254 is a list's "query refused" answer, never a listing
    r = raw_from(mx, "127.0.11.12")
    assert r.read_banner().code == 220
    r.cmd("QUIT")
    r.close()


def test_dnswl_skips_greylisting(mx):
    tok = token("wl")
    stage, code, text = attempt(mx, "127.0.12.6", "first@whitelisted.example", ALICE,
                                make_message(tok, sender="first@whitelisted.example"))
    assert (stage, code) == ("data", 250), text
    # a neighbour that is not listed is greylisted
    assert attempt(mx, "127.0.12.7", "first@whitelisted.example", ALICE)[:2] == ("rcpt", 451)
    assert len(mx.find(ALICE, tok)) == 1


# ---- stages on the loop (answers from the caches) and on the pool

VERDICT_RE = re.compile(r"event=filter stage=(\w+) ip=\S+ action=(\w+) code=(\d+) "
                        r"score=(\S+) rules=(\S+)")
RUN_RE = re.compile(r"event=filter_stage stage=(\w+) run=(\w+)")


def log_since(srv, offset):
    with open(srv.log_path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def session_log(srv, fn):
    """Runs fn() and returns (its result, {stage: run}, {stage: verdict})
    from the log lines it caused (one session at a time)."""
    off = os.path.getsize(srv.log_path)
    result = fn()
    text = wait_for(lambda: (lambda t: t if "event=close" in t else None)(log_since(srv, off)))
    assert text, "the session was not logged"
    runs = dict(RUN_RE.findall(text))
    verdicts = {m[0]: m[1:] for m in VERDICT_RE.findall(text)}
    return result, runs, verdicts


def test_cached_stages_run_on_the_loop_with_the_same_verdicts(make_server, nsd):
    cfg = filter_config(nsd.port, postscreen={"fcrdns": "score 1", "helo": "score 1"})
    cfg["dnsbl rhs"]["check"] = "sender, helo, from"
    srv = make_server(cfg)

    # a DNSBL-listed client: the pool asks DNS, the second connection is
    # answered from the cache on the loop, with the same rejection
    def banner():
        r = raw_from(srv, "127.0.11.11")
        b = r.read_banner()
        assert r.is_closed()
        return (b.code, b.enhanced, b.text)
    first, runs1, v1 = session_log(srv, banner)
    again, runs2, v2 = session_log(srv, banner)
    assert first[:2] == (554, "5.7.1") and "bl.test" in first[2], first
    assert (runs1["connect"], runs2["connect"]) == ("pool", "loop")
    assert again == first and v2["connect"] == v1["connect"], (v1, v2)
    assert "DNSBL_BL" in v1["connect"][3]

    # a scored client (DNSBL sc.test, no PTR, unknown HELO name, RHSBL
    # sender): a new triplet, its first pass, then a known triplet
    ip, sender = "127.0.13.13", "offers@spam-domain.test"
    # 6 + 1 + 1 + 6 = 14: Junk, under reject_score (15)
    msg = lambda tok: ("From: <%s>\r\nTo: %s\r\nSubject: %s\r\n"
                       "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
                       "Message-ID: <%s@spam-domain.test>\r\n\r\nBuy now.\r\n"
                       % (sender, ALICE, tok, tok)).encode()
    new, runs_a, va = session_log(srv, lambda: attempt(srv, ip, sender, ALICE))
    assert new[:2] == ("rcpt", 451), new
    assert all(runs_a[st] == "pool" for st in ("connect", "helo", "mail", "rcpt")), runs_a
    time.sleep(MIN_DELAY + 0.3)
    tok_b, tok_c = token("pool"), token("loop")
    first_pass, runs_b, vb = session_log(srv, lambda: attempt(srv, ip, sender, ALICE, msg(tok_b)))
    assert first_pass[:2] == ("data", 250), first_pass
    assert runs_b == {"connect": "loop", "helo": "loop", "mail": "loop", "rcpt": "pool"}, runs_b
    known, runs_c, vc = session_log(srv, lambda: attempt(srv, ip, sender, ALICE, msg(tok_c)))
    assert known[:2] == ("data", 250), known
    assert all(runs_c[st] == "loop" for st in ("connect", "helo", "mail", "rcpt")), runs_c
    for st in ("connect", "helo", "mail"):
        assert va[st] == vb[st] == vc[st], (st, va, vb, vc)
    assert vb["rcpt"] == vc["rcpt"] and vb["message"] == vc["message"], (vb, vc)
    for rule in ("DNSBL_SC", "FCRDNS_FAIL", "HELO_UNKNOWN_NAME", "RHSBL_RHS"):
        assert rule in va["connect"][3] + va["helo"][3] + va["mail"][3], (rule, va)
    # and the stored copies carry the same score and report
    reports = []
    for tok in (tok_b, tok_c):
        m = wait_for(lambda: srv.find(ALICE, tok, mailbox="Junk"))
        assert len(m) == 1, "not filed into Junk"
        reports.append((header_values(m[0], "X-Spam-Score"),
                        re.sub(r"\s+", " ", header_values(m[0], "X-Spam-Report")[0])))
    assert reports[0] == reports[1], reports

    # a retry before min_delay is greylisted from the loop (a read only)
    other = "early@spam-domain.test"
    _, runs_d, vd = session_log(srv, lambda: attempt(srv, ip, other, ALICE))
    again, runs_e, ve = session_log(srv, lambda: attempt(srv, ip, other, ALICE))
    assert again[:2] == ("rcpt", 451), again
    assert (runs_d["rcpt"], runs_e["rcpt"]) == ("pool", "loop")
    assert vd["rcpt"][:2] == ve["rcpt"][:2] == ("tempfail", "451")


# ---- scoring and Junk

def pass_greylist(srv, ip, sender, rcpt):
    assert attempt(srv, ip, sender, rcpt)[:2] == ("rcpt", 451)
    time.sleep(MIN_DELAY + 0.3)


def test_spam_scored_message_goes_to_junk_with_headers(mx):
    ip, sender = "127.0.13.13", "offers@spam-domain.test"
    pass_greylist(mx, ip, sender, "carol@example.test")
    tok = token("junk")
    # DNSBL sc.test (6) + RHSBL of the sender domain (6) + no Date, no
    # Message-ID: over add_header_score (5), under reject_score (15)
    msg = ("From: Offers <%s>\r\nTo: carol@example.test\r\nSubject: %s\r\n\r\nBuy now.\r\n"
           % (sender, tok)).encode()
    before = mx.count("carol@example.test", "INBOX")
    stage, code, text = attempt(mx, ip, sender, "carol@example.test", msg)
    assert (stage, code) == ("data", 250), text
    junk = wait_for(lambda: mx.find("carol@example.test", tok, mailbox="Junk"))
    assert len(junk) == 1, "not filed into Junk"
    assert mx.count("carol@example.test", "INBOX") == before
    m = junk[0]
    assert header_values(m, "X-Spam") == ["Yes"]
    score = float(header_values(m, "X-Spam-Score")[0])
    assert 5 <= score < 15, score
    report = header_values(m, "X-Spam-Report")[0]
    for rule in ("DNSBL_SC", "RHSBL_RHS", "MISSING_DATE", "MISSING_MESSAGE_ID"):
        assert rule in report, report
    # and IMAP shows it in Junk
    import imaplib
    imap_port = mx.ports.get("imap")
    if imap_port:
        with imaplib.IMAP4("127.0.0.1", imap_port) as c:
            c.starttls(ssl_context=harness.tls_context())
            c.login("carol@example.test", harness.USERS["carol@example.test"])
            typ, data = c.select("Junk", readonly=True)
            assert typ == "OK" and int(data[0]) >= 1


def test_clean_message_is_scored_but_stays_in_inbox(mx):
    ip, sender = "127.0.14.20", "friend@clean.example"
    pass_greylist(mx, ip, sender, ALICE)
    tok = token("clean")
    assert attempt(mx, ip, sender, ALICE, make_message(tok, sender=sender))[:2] == ("data", 250)
    m = mx.find(ALICE, tok)
    assert len(m) == 1
    assert header_values(m[0], "X-Spam") == ["No"] or not header_values(m[0], "X-Spam")
    assert header_values(m[0], "X-Spam-Score"), "a scanned message carries its score"
    assert not mx.find(ALICE, tok, mailbox="Junk")


def test_reject_score_refuses_at_end_of_data(mx):
    ip = "127.0.13.13"
    pass_greylist(mx, ip, "boss@spam-domain.test", BOB)
    tok = token("rej")
    msg = ("From: \"ceo@example.test\" <boss@spam-domain.test>\r\nTo: bob@example.test\r\n"
           "Subject: %s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
           "--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
           "--b\r\nContent-Type: application/octet-stream; name=\"invoice.exe\"\r\n"
           "Content-Disposition: attachment; filename=\"invoice.exe\"\r\n\r\nTVqQAAMAAAAEAAAA\r\n"
           "--b--\r\n" % tok).encode()
    stage, code, text = attempt(mx, ip, "boss@spam-domain.test", BOB, msg)
    assert (stage, code) == ("data", 550) and text.startswith("5.7.1"), text
    assert not mx.find(BOB, tok) and not mx.find(BOB, tok, mailbox="Junk")


# ---- allow and block lists

def test_block_list_at_connect_and_rcpt(mx):
    mx.cli("block", "add", "127.0.15.0/24")
    mx.cli("block", "add", "spammer@evil.example")

    def refused():
        r = raw_from(mx, "127.0.15.3")
        b = r.read_banner()
        r.close()
        return b if b.code != 220 else None
    b = wait_for(refused, 3)
    assert b is not None and (b.code, b.enhanced) == (554, "5.7.1"), b
    # the sender block list answers at RCPT
    with smtp_from(mx, "127.0.15.200".replace("15", "31")) as s:
        s.ehlo("client.example.org")
        s.mail("spammer@evil.example")
        assert_reply(s.rcpt(ALICE), 554, "5.7.1", "block-listed sender at RCPT")
    mx.cli("block", "del", "127.0.15.0/24")
    assert wait_for(lambda: refused() is None, 3), "block del did not reach the server"


def test_allow_list_skips_greylisting_and_scoring(mx):
    mx.cli("allow", "add", "127.0.16.0/24")
    time.sleep(1.2)     # list changes reach the server within a second
    tok = token("allow")
    stage, code, text = attempt(mx, "127.0.16.9", "anyone@unknown.example", ALICE,
                                ("From: x@unknown.example\r\nSubject: %s\r\n\r\nhi\r\n" % tok).encode())
    assert (stage, code) == ("data", 250), text
    m = mx.find(ALICE, tok)
    assert len(m) == 1 and not header_values(m[0], "X-Spam-Score")


def test_allow_sender_domain_needs_spf_pass(mx):
    mx.cli("allow", "add", "good.test")
    time.sleep(1.2)
    # SPF passes for 127.0.21.0/24 only (good.test's record)
    assert attempt(mx, "127.0.21.5", "news@good.test", ALICE)[:2] == ("data", 250)
    assert attempt(mx, "127.0.23.5", "news@good.test", ALICE)[:2] == ("rcpt", 451)


# ---- postscreen checks

def test_pregreet_rejected(make_server, nsd):
    srv = make_server(filter_config(nsd.port, postscreen={"greet_wait": "1s"}))
    r = raw_from(srv, "127.0.24.1")
    r.send("EHLO talker.example\r\n")       # before the banner
    b = r.read_banner()
    assert (b.code, b.enhanced) == (554, "5.7.1"), b
    assert r.is_closed()
    r.close()
    # a client that waits gets the banner after greet_wait
    t0 = time.time()
    r = raw_from(srv, "127.0.24.2")
    assert r.read_banner().code == 220
    assert time.time() - t0 >= 0.9
    r.close()
    assert "PREGREET" in srv.log_text()


def test_pipelining_without_pipelining_rejected(make_server, nsd):
    srv = make_server(filter_config(nsd.port, postscreen={"pipelining": "reject"}))
    r = raw_from(srv, "127.0.25.1")
    assert r.read_banner().code == 220
    r.send("HELO client.example.org\r\nMAIL FROM:<a@b.example>\r\n")
    b = r.reply()
    assert (b.code, b.enhanced) == (554, "5.7.1"), b
    r.close()
    # EHLO, then pipelining after PIPELINING was offered, is fine
    r = raw_from(srv, "127.0.25.2")
    r.read_banner()
    r.ehlo()
    r.send("MAIL FROM:<a@b.example>\r\nRSET\r\n")
    assert r.reply().code == 250 and r.reply().code == 250
    r.close()


def test_helo_reject(make_server, nsd):
    srv = make_server(filter_config(nsd.port, postscreen={"helo": "reject"}))
    r = raw_from(srv, "127.0.26.1")
    r.read_banner()
    b = r.cmd("EHLO localhost")
    assert (b.code, b.enhanced) == (550, "5.7.1"), b
    assert r.cmd("MAIL FROM:<a@b.example>").code == 503
    b = r.cmd("EHLO mail.good.test")
    assert b.code == 250, b
    r.close()


# ---- rate limits

def test_connection_rate_limit(mx):
    # connections_per_minute = 20
    codes = []
    for _ in range(21):
        r = raw_from(mx, "127.0.17.1")
        codes.append(r.read_banner())
        r.close()
    assert all(b.code == 220 for b in codes[:20]), codes
    assert (codes[20].code, codes[20].enhanced) == (421, "4.7.0"), codes[20]


def test_message_rate_limit(make_server, nsd):
    srv = make_server(filter_config(nsd.port, ratelimit={"messages_per_hour": "3"}))
    with smtp_from(srv, "127.0.18.1") as s:
        s.ehlo("client.example.org")
        got = []
        for _ in range(4):
            got.append(s.mail("x@rate.example"))
            s.rset()
    assert [c for c, _ in got[:3]] == [250, 250, 250], got
    assert_reply(got[3], 451, "4.7.1", "4th message in the hour")


def test_recipients_per_message(make_server, nsd):
    srv = make_server(filter_config(nsd.port, limits={"recipients": "2"},
                                    lists={"allow_ip": "127.0.27.0/24"}))
    with smtp_from(srv, "127.0.27.1") as s:
        s.ehlo("client.example.org")
        s.mail("x@rcpts.example")
        assert s.rcpt(ALICE)[0] == 250 and s.rcpt(BOB)[0] == 250
        assert_reply(s.rcpt("carol@example.test"), 452, "4.5.3", "third recipient")


# ---- Rspamd

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
GTUBE_ADD_HEADER = "Y" + GTUBE[1:]      # with enable_test_patterns: "add header"


class Rspamd:
    """Debian's rspamd with a private configuration: one normal worker on
    127.0.0.1:port, DNS from the test NSD, no hyperscan (fast start)."""

    def __init__(self, workdir, dns_port):
        self.dir = str(workdir)
        self.port = harness.free_port()
        self.conf = os.path.join(self.dir, "rspamd.conf")
        with open(self.conf, "w") as f:
            f.write('.include "$CONFDIR/common.conf"\n'
                    'options {\n  pidfile = "$DBDIR/rspamd.pid";\n'
                    '  .include "$CONFDIR/options.inc"\n'
                    '  dns { nameserver = ["127.0.0.1:%d"]; timeout = 1s; retransmits = 1; }\n'
                    '  disable_hyperscan = true;\n  enable_test_patterns = true;\n}\n'
                    'logging {\n  type = "file";\n  filename = "$DBDIR/rspamd.log";\n'
                    '  level = "info";\n}\n'
                    'worker "normal" {\n  bind_socket = "127.0.0.1:%d";\n  count = 1;\n'
                    '  .include "$CONFDIR/worker-normal.inc"\n}\n' % (dns_port, self.port))
        self.proc = None

    def start(self, timeout=90):
        import grp
        import pwd
        user = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
        argv = [RSPAMD, "-f", "-c", self.conf, "-u", user, "-g", group,
                "--var", "DBDIR=" + self.dir, "--var", "RUNDIR=" + self.dir,
                "--var", "LOGDIR=" + self.dir]
        if os.getuid() == 0:
            argv.append("-i")
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("rspamd exited %d" % self.proc.returncode)
            if self.ping():
                return self
            time.sleep(0.3)
        self.stop()
        raise RuntimeError("rspamd did not answer /ping within %ds" % timeout)

    def ping(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), 0.5) as s:
                s.sendall(b"GET /ping HTTP/1.0\r\n\r\n")
                return b"pong" in s.recv(4096)
        except OSError:
            return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture(scope="module")
def rspamd(tmp_path_factory, nsd):
    if not os.access(RSPAMD, os.X_OK):
        pytest.fail("rspamd is not installed (scripts/deps.sh installs it)")
    r = Rspamd(tmp_path_factory.mktemp("rspamd"), nsd.port).start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def rmx(module_server, nsd, rspamd):
    return module_server(filter_config(nsd.port, greylist={"enabled": "no"},
                                       rspamd={"url": "http://127.0.0.1:%d" % rspamd.port,
                                               "timeout": "5s"}))


def gtube_message(tok, pattern):
    return make_message(tok, sender="someone@sender.example",
                        body="Hello %s\r\n%s\r\n" % (tok, pattern))


def test_rspamd_reject_applied(rmx, rspamd):
    tok = token("gtube")
    stage, code, text = attempt(rmx, "127.0.40.1", "someone@sender.example", ALICE,
                                gtube_message(tok, GTUBE))
    assert (stage, code) == ("data", 550), text
    assert text.startswith("5.7.1") and "Gtube" in text, text
    assert not rmx.find(ALICE, tok) and not rmx.find(ALICE, tok, mailbox="Junk")
    assert 'event=rspamd action="reject"' in rmx.log_text()


def test_rspamd_add_header_files_into_junk(rmx, rspamd):
    tok = token("gtube-ah")
    stage, code, text = attempt(rmx, "127.0.40.2", "someone@sender.example", BOB,
                                gtube_message(tok, GTUBE_ADD_HEADER))
    assert (stage, code) == ("data", 250), text
    junk = wait_for(lambda: rmx.find(BOB, tok, mailbox="Junk"))
    assert len(junk) == 1
    assert header_values(junk[0], "X-Spam") == ["Yes"]
    assert "rspamd" in header_values(junk[0], "X-Spam-Report")[0]


def test_rspamd_clean_message_delivered(rmx, rspamd):
    tok = token("rs-clean")
    assert attempt(rmx, "127.0.40.3", "someone@sender.example", ALICE,
                   make_message(tok, sender="someone@sender.example"))[:2] == ("data", 250)
    m = rmx.find(ALICE, tok)
    assert len(m) == 1 and "rspamd" in header_values(m[0], "X-Spam-Report")[0]


def test_rspamd_down_mail_still_flows(rmx, rspamd):
    rspamd.stop()
    assert not rspamd.ping()
    tok = token("rs-down")
    # even the GTUBE pattern passes on the built-in score alone
    stage, code, text = attempt(rmx, "127.0.40.4", "someone@sender.example", ALICE,
                                gtube_message(tok, GTUBE))
    assert (stage, code) == ("data", 250), text
    assert len(rmx.find(ALICE, tok)) == 1
    assert "event=rspamd_unavailable" in rmx.log_text()
