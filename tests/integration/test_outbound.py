"""Outbound delivery: the queue delivers submitted mail to other servers.

The "Internet" here: test zones served by dnsresponder.py (MX records
pointing at 127.0.0.2, 127.0.0.3, ...; 127.0.0.4 has nothing listening)
and fake receiving MTAs (fakemta.py, asyncio) on those addresses, all on
one port that `[delivery] port` names.  Bounces for the local sender
alice@example.test land in her INBOX and are checked with Python's email
package (RFC 3464 structure).
"""
import email
import email.policy
import os
import re
import signal
import smtplib
import socket
import subprocess
import time

import pytest

from dnsresponder import DNSResponder
from fakemta import FakeMTA
from harness import POSTEL_BIN, USERS, make_message, tls_context, token

ALICE = "alice@example.test"

ZONE = {
    "pref.test": [{"MX": [20, "mx-b.pref.test"]}, {"MX": [10, "mx-a.pref.test"]}],
    "mx-a.pref.test": [{"A": "127.0.0.2"}],
    "mx-b.pref.test": [{"A": "127.0.0.3"}],
    "fallback.test": [{"MX": [10, "dead.fallback.test"]}, {"MX": [20, "live.fallback.test"]}],
    "dead.fallback.test": [{"A": "127.0.0.4"}],
    "live.fallback.test": [{"A": "127.0.0.2"}],
    "remote.test": [{"MX": [10, "mx.remote.test"]}],
    "mx.remote.test": [{"A": "127.0.0.2"}],
    "other.test": [{"MX": [10, "mx.other.test"]}],
    "mx.other.test": [{"A": "127.0.0.3"}],
    "down.test": [{"MX": [10, "mx.down.test"]}],
    "mx.down.test": [{"A": "127.0.0.4"}],
    "nullmx.test": [{"MX": [0, ""]}],
    "implicit.test": [{"A": "127.0.0.2"}],
    "cname.test": [{"MX": [10, "alias.cname.test"]}],
    "alias.cname.test": [{"CNAME": "mx.remote.test"}],
    "slow.test": ["SERVFAIL"],
}


def outbound_supported():
    p = subprocess.run([POSTEL_BIN, "--help"], capture_output=True, timeout=10)
    return b"sendmail" in p.stdout + p.stderr


pytestmark = pytest.mark.skipif(not outbound_supported(),
                                reason="outbound queue not wired into main.c/server.c")


def port_free_everywhere(port, hosts=("127.0.0.2", "127.0.0.3", "127.0.0.4")):
    for h in hosts:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((h, port))
            except OSError:
                return False
    return True


def common_port():
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.2", 0))
            port = s.getsockname()[1]
        if port_free_everywhere(port):
            return port
    raise RuntimeError("no common free port on 127.0.0.2-4")


@pytest.fixture(scope="module")
def dns():
    r = DNSResponder(ZONE).start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def port():
    return common_port()


@pytest.fixture
def mta(port):
    m = FakeMTA("127.0.0.2", port).start()
    yield m
    m.stop()


@pytest.fixture
def mta3(port):
    m = FakeMTA("127.0.0.3", port).start()
    yield m
    m.stop()


@pytest.fixture
def outbound(make_server, dns, port, monkeypatch):
    """Factory: a started server that delivers through the test DNS."""
    monkeypatch.setenv("POSTEL_QUEUE_TIMEOUT", "5")

    def make(config=None, env=None, **kw):
        for k, v in (env or {}).items():
            monkeypatch.setenv(k, v)
        cfg = {"dns": {"nameserver": "127.0.0.1:%d" % dns.port, "dnssec": "no"},
               "delivery": {"port": port}}
        for k, v in (config or {}).items():
            if isinstance(v, dict) and isinstance(cfg.get(k), dict):
                cfg[k].update(v)
            else:
                cfg[k] = v
        return make_server(config=cfg, **kw)
    return make


def submit(server, rcpts, msg, sender=ALICE, mail_options=(), rcpt_options=()):
    with smtplib.SMTP_SSL("127.0.0.1", server.ports["submissions"], context=tls_context(),
                          timeout=10) as s:
        s.login(sender, USERS[sender])
        refused = s.sendmail(sender, rcpts, msg, mail_options=list(mail_options),
                             rcpt_options=list(rcpt_options))
        assert not refused, refused


def wait_for(pred, timeout=20, step=0.1, what="condition"):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError("timed out waiting for " + what)


def queue_ids(server):
    out = server.cli("queue", "list").stdout.decode()
    return re.findall(r"^([0-9a-f]{8,})\s", out, re.M)


def wait_dsn(server, tok, timeout=20):
    """The DSN for tok in alice's INBOX, parsed."""
    def find():
        for m in server.find(ALICE, tok):
            if b"multipart/report" in m:
                return m
        return None
    raw = wait_for(find, timeout, what="a DSN for %s in %s's INBOX" % (tok, ALICE))
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def dsn_fields(msg):
    """(per-message fields, [per-recipient fields]) of a multipart/report."""
    assert msg.get_content_type() == "multipart/report", msg.get_content_type()
    assert msg.get_param("report-type") in ("delivery-status", "global-delivery-status")
    parts = msg.get_payload()
    assert len(parts) >= 2
    assert parts[0].get_content_type() == "text/plain"
    status = parts[1]
    assert status.get_content_type() in ("message/delivery-status",
                                         "message/global-delivery-status")
    blocks = status.get_payload()
    if status.get_content_type() == "message/global-delivery-status":
        # RFC 6533: the email package takes it for one message; the same
        # field blocks, in UTF-8
        raw = blocks[0].as_string() if isinstance(blocks, list) else blocks
        raw = raw.replace("\r\n", "\n").strip("\n")
        blocks = [email.message_from_string(b + "\n\n", policy=email.policy.compat32)
                  for b in re.split(r"\n\n+", raw) if b.strip()]
    per_msg = dict((k.lower(), v) for k, v in blocks[0].items())
    per_rcpt = [dict((k.lower(), v) for k, v in b.items()) for b in blocks[1:]]
    return per_msg, per_rcpt, parts


# ---------------------------------------------------------------- routing

def test_mx_preference_order(outbound, mta, mta3):
    srv = outbound()
    t = token("pref")
    submit(srv, ["u1@pref.test"], make_message(t, sender=ALICE, to="u1@pref.test"))
    [m] = mta.wait_messages(1)
    assert m.rcpt_addrs == ["u1@pref.test"] and m.sender == ALICE
    assert t.encode() in m.data
    time.sleep(0.5)
    assert mta3.messages == [], "the lower-preference MX got mail"
    wait_for(lambda: not queue_ids(srv), what="an empty queue")


def test_fallback_to_second_mx(outbound, mta):
    srv = outbound()
    t = token("fallback")
    submit(srv, ["u2@fallback.test"], make_message(t, sender=ALICE, to="u2@fallback.test"))
    [m] = mta.wait_messages(1)
    assert t.encode() in m.data
    log = srv.log_text()
    assert "127.0.0.4" in log and "delivery_connect_failed" in log, "first MX not tried"


def test_implicit_mx_and_cname(outbound, mta):
    srv = outbound()
    t = token("implicit")
    submit(srv, ["u@implicit.test", "v@cname.test"],
           make_message(t, sender=ALICE, to="u@implicit.test"))
    msgs = mta.wait_messages(2)
    got = sorted(a for m in msgs for a in m.rcpt_addrs)
    assert got == ["u@implicit.test", "v@cname.test"]


def test_dns_servfail_defers(outbound):
    srv = outbound()
    t = token("servfail")
    submit(srv, ["u@slow.test"], make_message(t, sender=ALICE, to="u@slow.test"))
    wait_for(lambda: "result=deferred" in srv.log_text(), what="a deferral")
    assert len(queue_ids(srv)) == 1
    assert "deferred" in srv.cli("queue", "list").stdout.decode()


# ---------------------------------------------------------------- protocol

def test_starttls_pipelining_dsn_params(outbound, mta, tmp_path):
    mta.tls = server_tls(tmp_path)
    srv = outbound()
    t = token("dsnparams")
    submit(srv, ["a@remote.test", "b@remote.test"], make_message(t, sender=ALICE, to="a@remote.test"),
           mail_options=["RET=HDRS", "ENVID=env-" + t],
           rcpt_options=["NOTIFY=SUCCESS,FAILURE"])
    [m] = mta.wait_messages(1)
    assert m.tls, "STARTTLS offered but not used"
    assert sorted(m.rcpt_addrs) == ["a@remote.test", "b@remote.test"], "one transaction, two RCPTs"
    assert "RET=HDRS" in m.mail_params and ("ENVID=env-" + t) in m.mail_params
    for _, p in m.rcpts:
        assert "NOTIFY=SUCCESS,FAILURE" in p
    # PIPELINING: MAIL, RCPT, RCPT, DATA written together; the fake logs
    # commands in order either way, so check the order at least.
    cmds = [c.split(":")[0].split(" ")[0] for c in mta.commands]
    assert cmds.index("MAIL") < cmds.index("RCPT") < cmds.index("DATA")


def test_helo_fallback_and_chunking(outbound, mta, port):
    mta.ehlo = None
    srv = outbound()
    t = token("helo")
    submit(srv, ["h@remote.test"], make_message(t, sender=ALICE, to="h@remote.test"))
    [m] = mta.wait_messages(1)
    assert t.encode() in m.data and not m.chunking
    assert any(c.startswith("HELO ") for c in mta.commands)
    with FakeMTA("127.0.0.3", port) as m3:
        m3.ehlo = ["PIPELINING", "CHUNKING", "8BITMIME"]
        body = "line one\r\n.starts with a dot\r\n" * 50
        submit(srv, ["c@other.test"], make_message(t + "c", sender=ALICE, to="c@other.test", body=body))
        [mc] = m3.wait_messages(1)
        assert mc.chunking, "CHUNKING offered but DATA used"
        assert b"\r\n.starts with a dot\r\n" in mc.data


def test_connection_reuse(outbound, mta):
    mta.data_delay = 0.3
    srv = outbound()
    t = token("reuse")
    with smtplib.SMTP_SSL("127.0.0.1", srv.ports["submissions"], context=tls_context(), timeout=10) as s:
        s.login(ALICE, USERS[ALICE])
        for i in range(4):
            s.sendmail(ALICE, ["r%d@remote.test" % i], make_message("%s-%d" % (t, i), sender=ALICE))
    msgs = mta.wait_messages(4)
    assert len(msgs) == 4
    assert len({m.conn_id for m in msgs}) < 4, "no connection carried two messages"


def test_concurrency_limit_per_destination(outbound, mta):
    """100 messages for one domain become due at once (deferred by a 421
    banner, then flushed) while its MX is slow: the queue opens many
    connections to it at once, never more than 20
    (QUEUE_DEST_CONCURRENCY), and delivers every message once."""
    mta.greeting = (421, "4.3.2 not now")
    srv = outbound()
    t = token("conc")
    n = 100
    with smtplib.SMTP_SSL("127.0.0.1", srv.ports["submissions"], context=tls_context(), timeout=10) as s:
        s.login(ALICE, USERS[ALICE])
        for i in range(n):
            s.sendmail(ALICE, ["c%d@remote.test" % i], make_message("%s-%d" % (t, i), sender=ALICE))
    wait_for(lambda: mta.connections >= 1 and mta.active == 0 and
             srv.cli("queue", "list").stdout.decode().count("remote.test") >= n,
             what="all %d messages deferred" % n)
    mta.greeting = (220, "fake.mta.test ESMTP")
    mta.data_delay = 2.0
    mta.max_active = 0          # count only the flushed deliveries
    srv.cli("queue", "flush")
    msgs = mta.wait_messages(n, timeout=60)
    assert sorted(m.rcpt_addrs[0] for m in msgs) == sorted("c%d@remote.test" % i for i in range(n))
    assert 10 < mta.max_active <= 20, mta.max_active
    # connections were reused: fewer of them than messages
    assert len({m.conn_id for m in msgs}) < n


def test_multiple_rcpts_per_recipient_results(outbound, mta):
    mta.rcpt_reply = lambda a: (550, "5.1.1 <%s>: no such user" % a) if a.startswith("nobody") else None
    srv = outbound()
    t = token("partial")
    submit(srv, ["ok@remote.test", "nobody@remote.test"], make_message(t, sender=ALICE))
    [m] = mta.wait_messages(1)
    assert m.rcpt_addrs == ["ok@remote.test"]
    dsn = wait_dsn(srv, t)
    _, rcpts, _ = dsn_fields(dsn)
    assert len(rcpts) == 1 and "nobody@remote.test" in rcpts[0]["final-recipient"]


# ---------------------------------------------------------------- retries and bounces

def test_4xx_retry_after_flush(outbound, mta):
    calls = []

    def once(addr):
        calls.append(addr)
        return (451, "4.3.0 try later") if len(calls) == 1 else None
    mta.rcpt_reply = once
    srv = outbound()
    t = token("retry")
    submit(srv, ["later@remote.test"], make_message(t, sender=ALICE))
    wait_for(lambda: calls, what="a first attempt")
    wait_for(lambda: "result=deferred" in srv.log_text(), what="the deferral")
    [qid] = queue_ids(srv)
    assert mta.messages == []
    srv.cli("queue", "flush")
    [m] = mta.wait_messages(1)
    assert t.encode() in m.data
    wait_for(lambda: not queue_ids(srv), what="an empty queue")
    assert len(calls) == 2


def test_5xx_bounce_dsn_structure(outbound, mta):
    mta.rcpt_reply = lambda a: (550, "5.1.1 <%s>: Recipient address rejected" % a)
    srv = outbound()
    t = token("bounce")
    submit(srv, ["gone@remote.test"], make_message(t, sender=ALICE, to="gone@remote.test"),
           mail_options=["ENVID=E" + t], rcpt_options=["ORCPT=rfc822;orig@remote.test"])
    dsn = wait_dsn(srv, t)
    assert dsn["From"].startswith("Mail Delivery System") and "MAILER-DAEMON@" in dsn["From"]
    assert ALICE in dsn["To"]
    assert dsn["Auto-Submitted"] == "auto-replied"
    per_msg, rcpts, parts = dsn_fields(dsn)
    assert per_msg["reporting-mta"].startswith("dns;")
    assert per_msg["original-envelope-id"] == "E" + t
    assert "arrival-date" in per_msg
    [r] = rcpts
    assert r["final-recipient"].replace(" ", "") == "rfc822;gone@remote.test"
    assert r["original-recipient"].replace(" ", "") == "rfc822;orig@remote.test"
    assert r["action"] == "failed"
    assert r["status"] == "5.1.1"
    assert r["remote-mta"].startswith("dns;") and "mx.remote.test" in r["remote-mta"]
    assert r["diagnostic-code"].startswith("smtp;") and "550" in r["diagnostic-code"]
    assert parts[2].get_content_type() == "message/rfc822"
    inner = parts[2].get_payload()[0]
    assert t in inner["Subject"]
    wait_for(lambda: not queue_ids(srv), what="the bounced entry to leave the queue")


def test_bounce_headers_only_when_ret_hdrs(outbound, mta):
    mta.rcpt_reply = lambda a: (550, "5.1.1 no")
    srv = outbound()
    t = token("rethdrs")
    submit(srv, ["x@remote.test"], make_message(t, sender=ALICE, body="BODY-%s\r\n" % t),
           mail_options=["RET=HDRS"])
    dsn = wait_dsn(srv, t)
    _, _, parts = dsn_fields(dsn)
    assert parts[2].get_content_type() == "text/rfc822-headers"
    assert ("BODY-" + t) not in parts[2].as_string()


def test_no_bounce_to_null_sender(outbound, mta):
    mta.rcpt_reply = lambda a: (550, "5.1.1 no")
    srv = outbound()
    t = token("nullsender")
    # a local alias forwarding to a remote address, fed a null-sender message
    srv.alias_add("fwd@example.test", "away@remote.test")
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=10) as s:
        s.sendmail("<>", ["fwd@example.test"], make_message(t, sender="x@y.test"))
    wait_for(lambda: "result=bounced" in srv.log_text(), what="the bounce decision")
    wait_for(lambda: "dsn_skipped" in srv.log_text(), what="the skipped DSN")
    wait_for(lambda: not queue_ids(srv), what="an empty queue")


def test_expiry_bounce(outbound):
    srv = outbound(config={"delivery": {"retry_max_age": "3s"}})
    t = token("expire")
    submit(srv, ["u@down.test"], make_message(t, sender=ALICE))
    dsn = wait_dsn(srv, t, timeout=25)
    _, [r], _ = dsn_fields(dsn)
    assert r["action"] == "failed"
    assert r["status"][0] in "45"
    assert "expired" in r["diagnostic-code"]
    wait_for(lambda: not queue_ids(srv), what="an empty queue")


def test_null_mx_bounces_at_once(outbound):
    srv = outbound()
    t = token("nullmx")
    submit(srv, ["u@nullmx.test"], make_message(t, sender=ALICE))
    dsn = wait_dsn(srv, t)
    _, [r], _ = dsn_fields(dsn)
    assert r["status"] == "5.1.10" and r["action"] == "failed"
    assert "remote-mta" not in r


def test_delay_dsn(outbound, mta):
    mta.rcpt_reply = lambda a: (451, "4.7.1 greylisted")
    srv = outbound(env={"POSTEL_QUEUE_DELAY_WARNING": "2"})
    t = token("delay")
    submit(srv, ["slowpoke@remote.test"], make_message(t, sender=ALICE),
           rcpt_options=["NOTIFY=DELAY,FAILURE"])
    dsn = wait_dsn(srv, t, timeout=20)
    _, [r], parts = dsn_fields(dsn)
    assert r["action"] == "delayed" and r["status"] == "4.7.1"
    assert "will-retry-until" in r
    assert len(queue_ids(srv)) == 1, "a delayed message stays queued"


def test_success_dsn_without_remote_dsn(outbound, mta):
    mta.ehlo = ["PIPELINING", "8BITMIME"]
    srv = outbound()
    t = token("success")
    submit(srv, ["yes@remote.test"], make_message(t, sender=ALICE),
           rcpt_options=["NOTIFY=SUCCESS"])
    mta.wait_messages(1)
    dsn = wait_dsn(srv, t)
    _, [r], _ = dsn_fields(dsn)
    assert r["action"] == "relayed" and r["status"].startswith("2.")


def test_smtputf8_bounce(outbound, mta):
    mta.ehlo = ["PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"]
    srv = outbound()
    t = token("utf8")
    msg = make_message(t, sender=ALICE, to="jöran@remote.test").replace(
        b"Subject: test", "Subject: tést".encode())
    submit(srv, ["jöran@remote.test"], msg, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    dsn = wait_dsn(srv, t)
    _, [r], _ = dsn_fields(dsn)
    assert r["status"] == "5.6.7" and r["action"] == "failed"
    assert mta.messages == []


def test_size_limit_bounce(outbound, mta):
    mta.ehlo = ["PIPELINING", "SIZE 1000"]
    srv = outbound()
    t = token("size")
    submit(srv, ["big@remote.test"], make_message(t, sender=ALICE, body="x" * 5000 + "\r\n"))
    dsn = wait_dsn(srv, t)
    _, [r], _ = dsn_fields(dsn)
    assert r["status"] == "5.3.4"
    assert not any(c.startswith("MAIL") for c in mta.commands)


# ---------------------------------------------------------------- relay host

def server_tls(tmp_path):
    import ssl
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj",
                    "/CN=fake.mta.test"], check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def test_relay_host_with_auth(outbound, tmp_path, dns):
    relay = FakeMTA("127.0.0.3", 0).start()
    try:
        relay.tls = server_tls(tmp_path)
        relay.auth = {"relayuser": "s3cret pass"}
        relay.auth_required = True
        pw = tmp_path / "relay.pass"
        pw.write_text("s3cret pass\n")
        srv = outbound(config={"relay": {"host": "127.0.0.3", "port": relay.port,
                                         "username": "relayuser", "password_file": str(pw)}})
        t = token("relay")
        # a domain with a Null MX: the relay is used regardless of DNS
        submit(srv, ["far@nullmx.test"], make_message(t, sender=ALICE))
        [m] = relay.wait_messages(1)
        assert m.tls and m.auth_user == "relayuser"
        assert m.rcpt_addrs == ["far@nullmx.test"] and t.encode() in m.data
        auth_lines = [c for c in relay.commands if c.upper().startswith("AUTH")]
        assert auth_lines and relay.commands.index(auth_lines[0]) > relay.commands.index("STARTTLS")
    finally:
        relay.stop()


def test_relay_auth_failure_defers(outbound, tmp_path):
    relay = FakeMTA("127.0.0.3", 0).start()
    try:
        relay.tls = server_tls(tmp_path)
        relay.auth = {"relayuser": "right"}
        relay.auth_required = True
        pw = tmp_path / "relay.pass"
        pw.write_text("wrong\n")
        srv = outbound(config={"relay": {"host": "127.0.0.3", "port": relay.port,
                                         "username": "relayuser", "password_file": str(pw)}})
        t = token("relayfail")
        submit(srv, ["far@remote.test"], make_message(t, sender=ALICE))
        wait_for(lambda: "result=deferred" in srv.log_text(), what="a deferral")
        assert relay.messages == [] and len(queue_ids(srv)) == 1
    finally:
        relay.stop()


# ---------------------------------------------------------------- commands

def test_queue_commands_on_running_server(outbound, port):
    srv = outbound()
    t = token("cmds")
    submit(srv, ["a@remote.test"], make_message(t + "a", sender=ALICE))
    submit(srv, ["b@remote.test"], make_message(t + "b", sender=ALICE))
    wait_for(lambda: srv.log_text().count("result=deferred") >= 2, what="two deferrals")
    ids = queue_ids(srv)
    assert len(ids) == 2
    shown = {i: srv.cli("queue", "show", i).stdout for i in ids}
    id_a = [i for i in ids if (t + "a").encode() in shown[i]][0]
    id_b = [i for i in ids if i != id_a][0]
    srv.cli("queue", "hold", id_a)
    srv.cli("queue", "delete", id_b)
    assert "hold" in srv.cli("queue", "list").stdout.decode()
    with FakeMTA("127.0.0.2", port) as m:
        srv.cli("queue", "flush")
        time.sleep(2.5)
        assert m.messages == [], "a held message was delivered"
        srv.cli("queue", "release", id_a)
        [got] = m.wait_messages(1)
        assert (t + "a").encode() in got.data
        time.sleep(1.5)
        assert len(m.messages) == 1, "a deleted message was delivered"
    wait_for(lambda: not queue_ids(srv), what="an empty queue")


def sendmail_env(srv):
    env = dict(os.environ)
    env["POSTEL_CONFIG"] = srv.conf
    return env


def test_sendmail_t(outbound, mta):
    srv = outbound()
    t = token("sendmail")
    text = ("From: Alice <%s>\nTo: one@remote.test, Two <two@remote.test>\nCc: local <bob@example.test>\n"
            "Bcc: hidden@remote.test\nSubject: %s\n\nbody of %s\n.\nafter a lone dot\n") % (ALICE, t, t)
    p = subprocess.run(srv.argv("sendmail", "-t", "-i", "-f", ALICE), input=text.encode(),
                       capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    msgs = mta.wait_messages(1)
    got = sorted(a for m in msgs for a in m.rcpt_addrs)
    assert got == ["hidden@remote.test", "one@remote.test", "two@remote.test"]
    data = msgs[0].data
    assert b"\r\nBcc:" not in data and not data.startswith(b"Bcc:")
    assert b"after a lone dot" in data, "-i: a lone dot must not end the message"
    assert b"\r\nMessage-ID:" in data and b"\r\nDate:" in data
    assert len(srv.find("bob@example.test", t)) == 1


def test_sendmail_as_argv0(outbound, mta, tmp_path):
    srv = outbound()
    link = tmp_path / "sendmail"
    os.symlink(POSTEL_BIN, link)
    t = token("argv0")
    p = subprocess.run([str(link), "-oi", "u@remote.test"], input=("Subject: %s\n\nhi\n" % t).encode(),
                       capture_output=True, timeout=30, env=sendmail_env(srv))
    assert p.returncode == 0, p.stderr
    [m] = mta.wait_messages(1)
    assert m.rcpt_addrs == ["u@remote.test"] and t.encode() in m.data
    assert re.search(rb"\r\nFrom: \S+@mx\.example\.test\r\n", b"\r\n" + m.data), m.data[:400]


def test_sendmail_bs(outbound, mta):
    srv = outbound()
    t = token("bs")
    script = ("EHLO me\r\nMAIL FROM:<%s>\r\nRCPT TO:<bs@remote.test>\r\nDATA\r\n"
              "Subject: %s\r\n\r\n..dotted\r\n.\r\nQUIT\r\n") % (ALICE, t)
    p = subprocess.run(srv.argv("sendmail", "-bs"), input=script.encode(), capture_output=True,
                       timeout=30)
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    assert re.search(r"^250 2\.0\.0 Ok: queued as \S+", out, re.M), out
    [m] = mta.wait_messages(1)
    assert b"\r\n.dotted\r\n" in m.data


# ---------------------------------------------------------------- durability

def test_queue_survives_restart(outbound, port):
    srv = outbound()
    t = token("restart")
    submit(srv, ["p@remote.test"], make_message(t, sender=ALICE))
    wait_for(lambda: "result=deferred" in srv.log_text(), what="a deferral")
    srv.restart()
    with FakeMTA("127.0.0.2", port) as m:
        srv.cli("queue", "flush")
        [got] = m.wait_messages(1)
        assert t.encode() in got.data


def test_kill9_during_delivery(outbound, mta):
    mta.data_delay = 4
    srv = outbound()
    t = token("kill9")
    submit(srv, ["k@remote.test"], make_message(t, sender=ALICE))
    wait_for(lambda: "DATA" in mta.commands or any(c.startswith("BDAT") for c in mta.commands),
             what="the transfer to start")
    time.sleep(0.5)
    srv.kill9()
    mta.data_delay = 0
    srv.start()
    srv.cli("queue", "flush")
    wait_for(lambda: not queue_ids(srv), timeout=30, what="an empty queue after restart")
    time.sleep(4.5)   # the first, interrupted transfer completes on the fake's side
    n = sum(1 for m in mta.messages if t.encode() in m.data)
    assert 1 <= n <= 2, "delivered %d times" % n
