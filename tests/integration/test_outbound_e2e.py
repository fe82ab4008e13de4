"""Outbound delivery end to end: real postel instances as the other domains.

The "Internet" of these tests:

  nsd            a real authoritative DNS server (Debian's nsd) on
                 127.0.0.1:DNSPORT serving the zones below; every postel
                 here resolves through it (`[dns] nameserver`)
  sender         postel on 127.0.0.1 (submission, smtp), domain example.test,
                 delivering to `[delivery] port` = PORT
  remote A       postel on 127.0.0.2:PORT, domain one.test (MX of one.test)
  remote B       postel on 127.0.0.3:PORT, domains two.test, implicit.test
                 (second MX of two.test, whose first MX 127.0.0.4 is down;
                 the A record of implicit.test, which has no MX)
  remote C       postel on 127.0.0.5:PORT, domain grey.test, greylisting
                 loopback clients (answers 451 4.7.1 first, 250 on retry)

Mail goes in by authenticated submission (smtplib) or by `sendmail` as cron
calls it, and is checked where it ends: the remote's INBOX (imaplib and
`postel mailbox`), its Received header (TLS), or the DSN in the local
sender's INBOX parsed with Python's email package.
"""
import email
import email.policy
import imaplib
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
from harness import USERS, Server, make_message, tls_context, token

ALICE = "alice@example.test"
NSD = shutil.which("nsd") or "/usr/sbin/nsd"
NSD_CHECKCONF = shutil.which("nsd-checkconf") or "/usr/sbin/nsd-checkconf"
REMOTE_PW = "Remote-Secret-9"

pytestmark = pytest.mark.skipif(not os.access(NSD, os.X_OK), reason="nsd is not installed (make deps)")


# ---------------------------------------------------------------- the DNS server

def zone_text(origin, records):
    lines = ["$ORIGIN %s." % origin, "$TTL 60",
             "@ IN SOA ns.%s. hostmaster.%s. 1 3600 600 86400 60" % (origin, origin),
             "@ IN NS ns.%s." % origin, "ns IN A 127.0.0.1"]
    return "\n".join(lines + records) + "\n"


ZONES = {
    # the sender's domain: SPF so that the remotes see "pass"
    "example.test": ['@ IN TXT "v=spf1 ip4:127.0.0.0/8 -all"', "mx IN A 127.0.0.1"],
    "0.0.127.in-addr.arpa": ["1 IN PTR mx.example.test."],
    "one.test": ["@ IN MX 10 mx.one.test.", "mx IN A 127.0.0.2"],
    "two.test": ["@ IN MX 10 mx1.two.test.", "@ IN MX 20 mx2.two.test.",
                 "mx1 IN A 127.0.0.4", "mx2 IN A 127.0.0.3"],
    "implicit.test": ["@ IN A 127.0.0.3"],
    "nullmx.test": ["@ IN MX 0 ."],
    "grey.test": ["@ IN MX 10 mx.grey.test.", "mx IN A 127.0.0.5"],
}


def udp_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


class NSDServer:
    """nsd in the foreground (-d) on 127.0.0.1:port, zones in its own dir."""

    def __init__(self, workdir, zones):
        self.dir = str(workdir)
        os.makedirs(self.dir, exist_ok=True)
        self.zones = zones
        self.proc = None
        self.port = None

    def _write(self):
        conf = ["server:",
                "    ip-address: 127.0.0.1@%d" % self.port,
                "    port: %d" % self.port,
                "    do-ip6: no",
                '    username: ""',
                '    chroot: ""',
                '    zonesdir: "%s"' % self.dir,
                '    database: ""',
                '    pidfile: "%s/nsd.pid"' % self.dir,
                '    xfrdfile: "%s/xfrd.state"' % self.dir,
                '    xfrdir: "%s"' % self.dir,
                '    zonelistfile: "%s/zone.list"' % self.dir,
                '    logfile: "%s/nsd.log"' % self.dir,
                "    server-count: 1",
                "    verbosity: 1",
                "remote-control:",
                "    control-enable: no"]
        for name, records in self.zones.items():
            path = os.path.join(self.dir, name + ".zone")
            with open(path, "w") as f:
                f.write(zone_text(name, records))
            conf += ["zone:", '    name: "%s"' % name, '    zonefile: "%s"' % path]
        self.conf = os.path.join(self.dir, "nsd.conf")
        with open(self.conf, "w") as f:
            f.write("\n".join(conf) + "\n")
        subprocess.run([NSD_CHECKCONF, self.conf], check=True, capture_output=True)

    def answers(self):
        from dnslib import DNSRecord
        try:
            r = DNSRecord.parse(DNSRecord.question("one.test", "MX").send("127.0.0.1", self.port, timeout=0.5))
            return any(str(rr.rdata).startswith("10 mx.one.test") for rr in r.rr)
        except (OSError, socket.timeout, Exception):
            return False

    def start(self):
        for _ in range(20):
            self.port = harness.free_port()
            if not udp_free(self.port):
                continue
            self._write()
            log = open(os.path.join(self.dir, "nsd.out"), "ab")
            self.proc = subprocess.Popen([NSD, "-d", "-c", self.conf], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log)
            log.close()
            end = time.time() + 10
            while time.time() < end and self.proc.poll() is None:
                if self.answers():
                    return self
                time.sleep(0.1)
            self.stop()     # lost a race for the port, or failed: try another one
        raise AssertionError("nsd did not start:\n" + self.log())

    def log(self):
        out = []
        for n in ("nsd.log", "nsd.out"):
            try:
                with open(os.path.join(self.dir, n)) as f:
                    out.append(f.read()[-3000:])
            except OSError:
                pass
        return "\n".join(out)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


# ---------------------------------------------------------------- the postel instances

class RemoteServer(Server):
    """A postel standing in for another domain's MX: its smtp (and imap)
    listeners on `host`, the smtp one on the port every sender delivers to."""

    def __init__(self, tmpdir, host, smtp_port, config, name, roles=("smtp", "imap")):
        super().__init__(tmpdir, config, roles=roles, name=name)
        self.host = host
        self.ports = {role: smtp_port if role == "smtp" else self._free_port(host) for role in roles}
        self.config["listen"] = {role: "%s:%d" % (host, p) for role, p in self.ports.items()}
        self.write_config()

    @staticmethod
    def _free_port(host):
        with socket.socket() as s:
            s.bind((host, 0))
            return s.getsockname()[1]

    def wait_ready(self, timeout=harness.START_TIMEOUT):
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise AssertionError("%s exited %d at start-up:\n%s" % (
                    self.name, self.proc.returncode, self.log_tail()))
            try:
                with socket.create_connection((self.host, self.ports["smtp"]), 1) as c:
                    c.settimeout(2)
                    if c.recv(512).startswith(b"220"):
                        c.sendall(b"QUIT\r\n")
                        if all(harness.port_accepts(p, self.host) for p in self.ports.values()):
                            return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("%s not ready on %s:\n%s" % (self.name, self.host, self.log_tail()))

    def imap_find(self, account, password, tok):
        """Messages in account's INBOX containing tok, read over IMAP."""
        with imaplib.IMAP4(self.host, self.ports["imap"], timeout=10) as im:
            im.starttls(tls_context())
            im.login(account, password)
            im.select("INBOX", readonly=True)
            typ, data = im.search(None, "TEXT", '"%s"' % tok)
            assert typ == "OK"
            out = []
            for num in data[0].split():
                typ, parts = im.fetch(num, "(RFC822)")
                assert typ == "OK"
                out.append(parts[0][1])
            im.logout()
            return out


def addr_free(host, port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")


def common_port():
    for _ in range(50):
        port = RemoteServer._free_port("127.0.0.2")
        if all(addr_free(h, port) for h in HOSTS):
            return port
    raise RuntimeError("no port free on all of %s" % (HOSTS,))


class World:
    pass


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("e2e")
    w = World()
    w.base = base
    w.nsd = NSDServer(base / "nsd", ZONES).start()
    w.port = common_port()
    dns = {"nameserver": "127.0.0.1:%d" % w.nsd.port, "dnssec": "no"}
    servers = []
    saved = {k: os.environ.get(k) for k in ("POSTEL_QUEUE_BACKOFF", "POSTEL_QUEUE_TIMEOUT")}
    try:
        def remote(name, host, domains, users, extra=None, roles=("smtp", "imap")):
            cfg = {"hostname": "mx.%s" % domains[0], "domains": ", ".join(domains), "dns": dns,
                   "delivery": {"port": w.port}}
            cfg.update(extra or {})
            srv = RemoteServer(base / name, host, w.port, cfg, name, roles)
            for u in users:
                srv.user_add(u, REMOTE_PW)
            servers.append(srv)
            return srv.start()

        # remote A is also the smarthost of test_relay_host_is_a_real_postel
        w.a = remote("remote-a", "127.0.0.2", ["one.test"], ["u1@one.test", "relay@one.test"],
                     roles=("smtp", "imap", "submission"))
        w.a.alias_add(ALICE, "relay@one.test")      # relay@ may send as alice
        w.b = remote("remote-b", "127.0.0.3", ["two.test", "implicit.test"],
                     ["u2@two.test", "u3@implicit.test"])
        w.c = remote("remote-c", "127.0.0.5", ["grey.test"], ["g@grey.test"],
                     {"lists": {"allow_loopback": "no"},
                      "greylist": {"enabled": "yes", "min_delay": "1s", "auto_allow_after": "0"}})
        # the sender retries a deferred message after 2 s (then 4, 8, ...)
        os.environ["POSTEL_QUEUE_BACKOFF"] = "2"
        os.environ["POSTEL_QUEUE_TIMEOUT"] = "5"
        w.s = Server(base / "sender", {"hostname": "mx.example.test", "domains": "example.test",
                                       "dns": dns, "delivery": {"port": w.port}},
                     roles=("smtp", "submission", "submissions"), name="sender")
        for addr, pw in USERS.items():
            w.s.user_add(addr, pw)
        servers.append(w.s)
        w.s.start()
        w.servers = servers
        w.dns = dns
        yield w
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        errors = harness.stop_all(servers)
        w.nsd.stop()
        if errors:
            pytest.fail("server shutdown: " + "; ".join(errors))


def submit(srv, rcpts, msg, sender=ALICE):
    with smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=10) as s:
        s.starttls(context=tls_context())
        s.login(sender, USERS[sender])
        refused = s.sendmail(sender, rcpts, msg)
        assert not refused, refused


def wait_for(pred, timeout=30, step=0.2, what="condition"):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError("timed out waiting for " + what)


def wait_remote(srv, account, tok, timeout=30):
    return wait_for(lambda: srv.find(account, tok), timeout,
                    what="%s in %s's INBOX on %s" % (tok, account, srv.name))


def queue_empty(srv):
    return srv.cli("queue", "list").stdout.decode().strip() == "Mail queue is empty"


def parse(raw):
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def received_by(msg_bytes, host):
    """The Received header the remote `host` added (the first one)."""
    m = parse(msg_bytes)
    for r in m.get_all("Received") or []:
        r = " ".join(r.split())
        if "by " + host in r:
            return r
    raise AssertionError("no Received header by %s in:\n%s" % (host, msg_bytes[:1500]))


def wait_dsn(srv, tok, timeout=30):
    def find():
        for m in srv.find(ALICE, tok):
            if b"multipart/report" in m:
                return m
        return None
    return parse(wait_for(find, timeout, what="a DSN for %s in %s's INBOX" % (tok, ALICE)))


def dsn_fields(msg):
    """(per-message fields, [per-recipient fields], parts) of a DSN."""
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    parts = msg.get_payload()
    assert [p.get_content_type() for p in parts[:2]] == ["text/plain", "message/delivery-status"]
    blocks = parts[1].get_payload()
    per_msg = {k.lower(): v for k, v in blocks[0].items()}
    per_rcpt = [{k.lower(): v for k, v in b.items()} for b in blocks[1:]]
    return per_msg, per_rcpt, parts


# ---------------------------------------------------------------- tests

def test_submission_to_remote_inbox_over_starttls(world):
    t = token("e2e")
    submit(world.s, ["u1@one.test"], make_message(t, sender=ALICE, to="u1@one.test"))
    [got] = wait_remote(world.a, "u1@one.test", t)
    # read it as the remote user would, over IMAP
    [via_imap] = world.a.imap_find("u1@one.test", REMOTE_PW, t)
    assert via_imap.replace(b"\r\n", b"\n") == got.replace(b"\r\n", b"\n")
    m = parse(got)
    assert m["Return-Path"].strip("<> ") == ALICE
    assert t in m["Subject"]
    # the remote's trace header: from the sender (EHLO name, loopback
    # address), over STARTTLS (RFC 3848 ESMTPS and the TLS version)
    rcv = received_by(got, "mx.one.test")
    assert rcv.startswith("Received: from mx.example.test") or "from mx.example.test" in rcv, rcv
    assert "[127.0.0.1]" in rcv, rcv
    assert "with ESMTPS" in rcv and "TLSv1." in rcv, rcv
    wait_for(lambda: queue_empty(world.s), what="the sender's queue to empty")


def test_first_mx_down_second_takes_it(world):
    t = token("mx2")
    submit(world.s, ["u2@two.test"], make_message(t, sender=ALICE, to="u2@two.test"))
    [got] = wait_remote(world.b, "u2@two.test", t)
    assert "with ESMTPS" in received_by(got, "mx.two.test")
    log = world.s.log_text()
    assert re.search(r"event=delivery_connect_failed .*mx1\.two\.test\[127\.0\.0\.4\]", log), \
        "the first MX (127.0.0.4) was never tried"
    wait_for(lambda: queue_empty(world.s), what="the sender's queue to empty")


def test_implicit_mx(world):
    t = token("implicit")
    submit(world.s, ["u3@implicit.test"], make_message(t, sender=ALICE, to="u3@implicit.test"))
    [got] = wait_remote(world.b, "u3@implicit.test", t)
    assert t.encode() in got


def test_several_domains_one_submission(world):
    t = token("multi")
    submit(world.s, ["u1@one.test", "u2@two.test", "u3@implicit.test", "bob@example.test"],
           make_message(t, sender=ALICE, to="u1@one.test"))
    assert len(wait_remote(world.a, "u1@one.test", t)) == 1
    assert len(wait_remote(world.b, "u2@two.test", t)) == 1
    assert len(wait_remote(world.b, "u3@implicit.test", t)) == 1
    assert len(world.s.find("bob@example.test", t)) == 1
    wait_for(lambda: queue_empty(world.s), what="the sender's queue to empty")
    # exactly once each, also after the queue emptied
    assert len(world.a.find("u1@one.test", t)) == 1
    assert len(world.b.find("u2@two.test", t)) == 1


def test_greylisted_4xx_then_delivered(world):
    t = token("grey")
    submit(world.s, ["g@grey.test"], make_message(t, sender=ALICE, to="g@grey.test"))
    # first attempt: the remote greylists with 451 4.7.1; the queue keeps it
    deferral = re.compile(r"event=delivery id=\S+ rcpt=<g@grey\.test> result=deferred "
                          r"mta=mx\.grey\.test\[127\.0\.0\.5\]\S* status=4\.7\.1 "
                          r'diag="smtp; 451 4\.7\.1 Greylisted')
    wait_for(lambda: deferral.search(world.s.log_text()), what="the sender to defer on 451")
    # the retry (backoff 2 s here) passes the greylist
    [got] = wait_remote(world.c, "g@grey.test", t, timeout=40)
    assert t.encode() in got
    wait_for(lambda: queue_empty(world.s), what="the sender's queue to empty")
    assert world.s.find(ALICE, t) == [], "a DSN was sent for a delivered message"


def test_5xx_bounce_parsed_by_email_package(world):
    t = token("bounce")
    submit(world.s, ["nobody@one.test"], make_message(t, sender=ALICE, to="nobody@one.test"))
    dsn = wait_dsn(world.s, t)
    assert "MAILER-DAEMON@" in dsn["From"] and ALICE in dsn["To"]
    assert dsn["Auto-Submitted"] == "auto-replied"
    per_msg, [r], parts = dsn_fields(dsn)
    assert per_msg["reporting-mta"].replace(" ", "") == "dns;mx.example.test"
    assert r["final-recipient"].replace(" ", "") == "rfc822;nobody@one.test"
    assert r["action"] == "failed"
    assert r["status"].startswith("5.1.")
    assert r["remote-mta"].replace(" ", "").startswith("dns;mx.one.test")
    diag = r["diagnostic-code"]
    assert diag.replace(" ", "").startswith("smtp;550"), diag
    # the original message comes back
    assert parts[2].get_content_type() in ("message/rfc822", "text/rfc822-headers")
    assert t in parts[2].as_string()
    wait_for(lambda: queue_empty(world.s), what="the bounced entry to leave the queue")
    assert world.a.find("u1@one.test", t) == []


def test_null_mx_bounces_at_once(world):
    t = token("nullmx")
    submit(world.s, ["x@nullmx.test"], make_message(t, sender=ALICE, to="x@nullmx.test"))
    dsn = wait_dsn(world.s, t, timeout=15)
    _, [r], _ = dsn_fields(dsn)
    assert r["action"] == "failed" and r["status"] == "5.1.10"
    assert "remote-mta" not in r


def test_sendmail_as_cron_calls_it(world, tmp_path):
    """Debian's cron runs `sendmail -FCronDaemon -i -B8BITMIME -oem -oi -t`
    with the job's output on stdin (bare LF lines); postel is installed as
    sendmail by a symlink, and finds its configuration in POSTEL_CONFIG."""
    link = tmp_path / "sendmail"
    os.symlink(harness.POSTEL_BIN, link)
    t = token("cron")
    job_output = ("From: root (Cron Daemon)\nTo: u1@one.test\n"
                  "Subject: Cron <root@mx> /usr/local/bin/report %s\n"
                  "MIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\n"
                  "Content-Transfer-Encoding: 8bit\nX-Cron-Env: <SHELL=/bin/sh>\n"
                  "X-Cron-Env: <HOME=/root>\n\nreport line 1 %s\n.\nline after a lone dot\n") % (t, t)
    env = harness.clean_env()
    env["POSTEL_CONFIG"] = world.s.conf
    p = subprocess.run([str(link), "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "-oi", "-t"],
                       input=job_output.encode(), capture_output=True, timeout=30, env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"" and p.stderr == b"", (p.stdout, p.stderr)
    [got] = wait_remote(world.a, "u1@one.test", t)
    m = parse(got)
    assert m["From"].startswith("root (Cron Daemon)")
    assert m["Message-ID"] and m["Date"], "sendmail must add Message-ID and Date"
    assert b"line after a lone dot" in got
    assert m["Return-Path"].strip("<> ").endswith("@mx.example.test")
    assert "with ESMTPS" in received_by(got, "mx.one.test")


def test_relay_host_is_a_real_postel(world, tmp_path):
    """[relay]: a second sender hands everything to remote A's submission
    port (found by name through nsd) with AUTH over STARTTLS; A delivers
    to two.test's second MX like any submitted message."""
    pw = tmp_path / "relay.pass"
    pw.write_text(REMOTE_PW + "\n")
    srv = Server(world.base / "relaying-sender",
                 {"hostname": "out.example.test", "domains": "example.test", "dns": world.dns,
                  "delivery": {"port": world.port},
                  "relay": {"host": "mx.one.test", "port": world.a.ports["submission"],
                            "username": "relay@one.test", "password_file": str(pw)}},
                 roles=("smtp", "submission"), name="relaying-sender")
    srv.user_add(ALICE, USERS[ALICE])
    world.servers.append(srv)
    srv.start()
    t = token("relay")
    submit(srv, ["u2@two.test"], make_message(t, sender=ALICE, to="u2@two.test"))
    [got] = wait_remote(world.b, "u2@two.test", t)
    # A took it authenticated over TLS (RFC 3848 ESMTPSA) from the sender...
    via_a = received_by(got, "mx.one.test")
    assert "from out.example.test" in via_a and "with ESMTPSA" in via_a, via_a
    # ... and passed it on to B over TLS
    assert "with ESMTPS" in received_by(got, "mx.two.test")
    # the sender never looked two.test up: its only connection was to A
    log = srv.log_text()
    assert re.search(r"event=delivery id=\S+ rcpt=<u2@two\.test> result=sent "
                     r"mta=mx\.one\.test\[127\.0\.0\.2\]:%d" % world.a.ports["submission"], log), log[-2000:]
    wait_for(lambda: queue_empty(srv), what="the relaying sender's queue to empty")


def test_postel_mx_through_nsd(world):
    """`postel mx` shows the routing the queue uses, from the same server."""
    out = world.s.cli("mx", "two.test").stdout.decode().splitlines()
    assert out == ["10 mx1.two.test 127.0.0.4", "20 mx2.two.test 127.0.0.3"], out
    [line] = world.s.cli("mx", "implicit.test").stdout.decode().splitlines()
    assert line.startswith("0 implicit.test 127.0.0.3") and "implicit MX" in line, line
    p = world.s.cli("mx", "nullmx.test", check=False)
    assert p.returncode != 0 and b"null MX" in p.stdout, p
    p = world.s.cli("mx", "nonexistent.one.test", check=False)
    assert p.returncode != 0 and b"NXDOMAIN" in p.stderr, p
