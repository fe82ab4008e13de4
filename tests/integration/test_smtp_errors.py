"""Every row of DESIGN section 5 (replies to bad input): each case asserts
the reply code and the RFC 3463 enhanced status code, that nothing is
stored when something is refused, and that the session goes on (or ends)
as it should."""
import base64
import os
import subprocess
import time

import pytest

from harness import Closed, USERS, assert_reply, make_message, tls_context, token

ALICE = "alice@example.test"
BOB = "bob@example.test"
SMUGGLED = ("MAIL FROM:<evil@example.org>\r\nRCPT TO:<%s>\r\nDATA\r\n"
            "Subject: smuggled %%s\r\n\r\nsmuggled body\r\n.\r\n" % ALICE)


def plain_ir(user, password):
    return base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()


def session(server, role="smtp"):
    c = server.raw(role)
    b = c.read_banner()
    assert b.code == 220, b
    c.ehlo()
    return c


def start_data(c, rcpts=(ALICE,), sender="sender@example.org"):
    assert c.cmd("MAIL FROM:<%s>" % sender).code == 250
    for r in rcpts:
        assert c.cmd("RCPT TO:<%s>" % r).code == 250
    r = c.cmd("DATA")
    assert r.code == 354, r


def assert_session_alive(c):
    assert_reply(c.cmd("NOOP"), 250, "2.0.0", "NOOP after the error (session must continue)")


@pytest.fixture(scope="module")
def small(module_server):
    """message_size 100K, at most 3 recipients per transaction."""
    return module_server({"limits": {"message_size": "100K", "recipients": 3}})


# ---------------------------------------------------------------- line length

def test_line_513_octets(server):
    with session(server) as c:
        line = "NOOP " + "x" * 506           # + CRLF = 513 octets
        assert len(line) + 2 == 513
        assert_reply(c.cmd(line), 500, "5.5.2", "513-octet command line")
        assert_session_alive(c)


def test_line_512_octets_accepted(server):
    with session(server) as c:
        line = "NOOP " + "x" * 505           # + CRLF = 512 octets: the limit itself
        assert_reply(c.cmd(line), 250, "2.0.0", "512-octet NOOP line (RFC 5321 4.5.3.1.4 allows it)")


def test_very_long_line_one_reply(server):
    with session(server) as c:
        c.send("MAIL FROM:<" + "a" * 20000 + "@example.org>\r\n")
        assert_reply(c.reply(), 500, "5.5.2", "20000-octet command line")
        # exactly one reply for the whole line: the next one answers NOOP
        assert_session_alive(c)
        assert_reply(c.cmd("MAIL FROM:<sender@example.org>"), 250, "2.1.0", "MAIL after long line")


# ---------------------------------------------------------------- syntax, sequence

def test_unknown_command(server):
    with session(server) as c:
        assert_reply(c.cmd("FROBNICATE now"), 500, "5.5.1", "unknown command")
        assert_reply(c.cmd("XYZZY"), 500, "5.5.1", "unknown command")
        assert_session_alive(c)


@pytest.mark.parametrize("line", ["EHLO", "HELO", "MAIL TO:<sender@example.org>", "MAIL",
                                  "RCPT FROM:<alice@example.test>"])
def test_bad_syntax(server, line):
    with session(server) as c:
        if line.startswith("RCPT"):
            assert c.cmd("MAIL FROM:<sender@example.org>").code == 250
        assert_reply(c.cmd(line), 501, "5.5.4", "bad syntax %r" % line)
        assert_session_alive(c)


@pytest.mark.parametrize("line,enh", [("MAIL FROM:<sender@example.org", ("5.5.4", "5.1.7")),
                                      ("MAIL FROM:sender@@example.org", ("5.5.4", "5.1.7")),
                                      ("RCPT TO:<alice@example.test", ("5.5.4", "5.1.3")),
                                      ("RCPT TO:<>", ("5.5.4", "5.1.3"))])
def test_bad_address_syntax(server, line, enh):
    with session(server) as c:
        if line.startswith("RCPT"):
            assert c.cmd("MAIL FROM:<sender@example.org>").code == 250
        r = c.cmd(line)
        assert r.code == 501 and r.enhanced in enh, "%r: expected 501 %s, got %r" % (line, "/".join(enh), r)


def test_rcpt_before_mail(server):
    with session(server) as c:
        assert_reply(c.cmd("RCPT TO:<%s>" % ALICE), 503, "5.5.1", "RCPT before MAIL")


def test_data_before_rcpt(server):
    with session(server) as c:
        assert_reply(c.cmd("DATA"), 503, "5.5.1", "DATA before MAIL")
        assert c.cmd("MAIL FROM:<sender@example.org>").code == 250
        assert_reply(c.cmd("DATA"), 503, "5.5.1", "DATA before RCPT")
        assert_session_alive(c)


def test_nested_mail(server):
    with session(server) as c:
        assert c.cmd("MAIL FROM:<sender@example.org>").code == 250
        assert_reply(c.cmd("MAIL FROM:<other@example.org>"), 503, "5.5.1", "second MAIL in a transaction")


def test_bdat_before_rcpt_consumes_chunk(server):
    with session(server) as c:
        # the 6 octets after BDAT are data, never commands, even when refused
        c.send(b"BDAT 6\r\nQUIT\r\n")
        assert_reply(c.reply(), 503, "5.5.1", "BDAT before MAIL")
        assert_session_alive(c)


# ---------------------------------------------------------------- DATA content

@pytest.mark.parametrize("name,bad", [("bare LF", b"line one\nline two\r\n"),
                                      ("bare CR", b"line one\rline two\r\n"),
                                      ("bare LF before CRLF", b"line one\n\r\nlast\r\n")])
def test_bare_lf_cr_in_data(server, name, bad):
    t = token("bare")
    with session(server) as c:
        start_data(c)
        c.send(make_message(t, body="") + bad + b".\r\n")
        assert_reply(c.reply(), 550, "5.6.0", "%s in DATA" % name)
        assert_session_alive(c)
        # and the session can still deliver a clean message
        t2 = token("clean")
        assert_reply(c.transaction("sender@example.org", [ALICE], make_message(t2)), 250, "2.0.0",
                     "clean message after a rejected one")
    assert server.find(ALICE, t) == [], "message with %s was stored" % name
    assert len(server.find(ALICE, t2)) == 1


@pytest.mark.parametrize("end", [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r"])
def test_smtp_smuggling(server, end):
    t1, t2 = token("smug1"), token("smug2")
    with session(server) as c:
        start_data(c)
        payload = make_message(t1, body="first body") .rstrip(b"\r\n") + end + (SMUGGLED % t2).encode()
        c.send(payload)
        r = c.reply()
        assert_reply(r, 550, "5.6.0", "smuggling payload with end %r" % end)
        # nothing of the payload was taken as commands: the next reply is NOOP's
        assert_session_alive(c)
    msgs = server.messages(ALICE)
    assert not [m for m in msgs if t2.encode() in m and t1.encode() not in m], "smuggled message stored"
    assert not [m for m in msgs if t1.encode() in m], "message with a non-CRLF end stored"


def test_bare_lf_in_command(server):
    with session(server) as c:
        c.send("MAIL FROM:<sender@example.org>\nRCPT TO:<%s>\r\n" % ALICE)
        assert_reply(c.reply(), 500, "5.5.2", "bare LF in a command line")
        # never reinterpreted: no transaction came of it; every further reply
        # until our NOOP is an error
        c.send("DATA\r\nNOOP\r\n")
        for _ in range(4):
            r = c.reply()
            if r.code == 250:
                assert r.enhanced == "2.0.0", r
                break
            assert r.code >= 500, "bare-LF command line was acted upon: %r" % r
        else:
            pytest.fail("NOOP never answered")


def test_bare_cr_in_command(server):
    with session(server) as c:
        c.send("NOOP\rRSET\r\n")
        r = c.reply()
        assert r.code == 500 and r.enhanced in ("5.5.2", "5.5.1"), "bare CR in a command: %r" % r
        assert_session_alive(c)


# ---------------------------------------------------------------- limits

def test_size_advertised(small):
    with session(small) as c:
        r = c.cmd("EHLO client.example.org")
        sizes = [l.split()[1] for l in r.lines if l.upper().startswith("SIZE ")]
        assert sizes == ["102400"], r


def test_message_over_size(small):
    t = token("big")
    with session(small) as c:
        start_data(c)
        big = make_message(t, body=("y" * 998 + "\r\n") * 150)      # ~150 KB > 100K
        c.send(big + b".\r\n")
        assert_reply(c.reply(), 552, "5.3.4", "message over message_size")
        assert_session_alive(c)
    assert small.find(ALICE, t) == []


def test_message_over_size_bdat(small):
    t = token("bigbdat")
    with session(small) as c:
        assert c.cmd("MAIL FROM:<sender@example.org>").code == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE).code == 250
        big = make_message(t, body=("z" * 998 + "\r\n") * 150)
        c.send(b"BDAT %d LAST\r\n" % len(big) + big)
        assert_reply(c.reply(), 552, "5.3.4", "BDAT over message_size")
        assert_session_alive(c)
    assert small.find(ALICE, t) == []


def test_size_param_too_big(small):
    with session(small) as c:
        assert_reply(c.cmd("MAIL FROM:<sender@example.org> SIZE=200000"), 552, "5.3.4",
                     "MAIL SIZE= over message_size")
        assert_reply(c.cmd("MAIL FROM:<sender@example.org> SIZE=1000"), 250, "2.1.0", "MAIL SIZE=1000")


def test_too_many_recipients(small):
    t = token("rcpts")
    with session(small) as c:
        assert c.cmd("MAIL FROM:<sender@example.org>").code == 250
        for r in (ALICE, BOB, "carol@example.test"):
            assert_reply(c.cmd("RCPT TO:<%s>" % r), 250, "2.1.5", "RCPT %s" % r)
        assert_reply(c.cmd("RCPT TO:<dave@example.test>"), 452, "4.5.3", "4th RCPT with recipients=3")
        assert c.cmd("DATA").code == 354
        c.send(make_message(t) + b".\r\n")
        assert_reply(c.reply(), 250, "2.0.0", "DATA for the 3 accepted recipients")
    for acct in (ALICE, BOB, "carol@example.test"):
        assert len(small.find(acct, t)) == 1
    assert small.find("dave@example.test", t) == []


# ---------------------------------------------------------------- recipients, relay

def test_unknown_local_user(server):
    with session(server) as c:
        assert c.cmd("MAIL FROM:<sender@example.org>").code == 250
        assert_reply(c.cmd("RCPT TO:<nobody@example.test>"), 550, "5.1.1", "unknown local user")
        assert_reply(c.cmd("RCPT TO:<nobody@example.net>"), 550, "5.1.1", "unknown user, 2nd domain")
        assert_reply(c.cmd("RCPT TO:<%s>" % ALICE), 250, "2.1.5", "known user after unknown")


def test_relay_denied(server):
    with session(server) as c:
        assert c.cmd("MAIL FROM:<sender@example.org>").code == 250
        assert_reply(c.cmd("RCPT TO:<someone@remote.example>"), 554, "5.7.1", "relay without AUTH")
        # local-looking sender does not open the relay either
        assert c.cmd("RSET").code == 250
        assert c.cmd("MAIL FROM:<%s>" % ALICE).code == 250
        assert_reply(c.cmd("RCPT TO:<someone@remote.example>"), 554, "5.7.1", "relay with local sender")


# ---------------------------------------------------------------- AUTH

def test_submission_requires_auth(server):
    with session(server, "submission") as c:
        assert_reply(c.cmd("MAIL FROM:<%s>" % ALICE), 530, "5.7.0", "MAIL on submission before TLS")
        c.starttls()
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<%s>" % ALICE), 530, "5.7.0", "MAIL on submission without AUTH")
    with session(server, "submissions") as c:
        assert_reply(c.cmd("MAIL FROM:<%s>" % ALICE), 530, "5.7.0", "MAIL on submissions without AUTH")


@pytest.mark.parametrize("explicit", [True, False])
def test_auth_plaintext_refused(module_server, explicit):
    srv = module_server({"auth": {"plaintext_loopback": "no"}} if explicit else None)
    with session(srv, "submission") as c:
        r = c.cmd("AUTH PLAIN " + plain_ir(ALICE, USERS[ALICE]))
        assert_reply(r, 538, "5.7.11", "AUTH PLAIN before STARTTLS (plaintext_loopback=%s)" %
                     ("no" if explicit else "default"))
        assert_reply(c.cmd("AUTH LOGIN"), 538, "5.7.11", "AUTH LOGIN before STARTTLS")


def test_auth_failures_then_421(make_server):
    srv = make_server({"limits": {"auth_failures": 3}})
    with session(srv, "submissions") as c:
        replies, delays = [], []
        for i in range(6):
            t0 = time.time()
            try:
                r = c.cmd("AUTH PLAIN " + plain_ir(ALICE, "wrong-password-%d" % i), timeout=30)
            except (Closed, ConnectionError, BrokenPipeError):
                pytest.fail("connection closed without 421 after %r" % replies)
            delays.append(time.time() - t0)
            replies.append(r)
            if r.code != 535:
                break
        assert_reply(replies[0], 535, "5.7.8", "first bad AUTH")
        assert_reply(replies[-1], 421, "4.7.0", "AUTH after repeated failures (%r)" % replies)
        n535 = sum(1 for r in replies if r.code == 535)
        assert 1 <= n535 <= 3, "%d failures answered 535 with auth_failures=3" % n535
        for r in replies[:-1]:
            assert_reply(r, 535, "5.7.8", "bad AUTH")
        assert c.is_closed(), "connection open after 421"
    if n535 >= 2:
        assert max(delays[1:n535]) > delays[0] + 0.3, "no growing delay between failures: %r" % delays
    # a good password on a new connection still works
    with session(srv, "submissions") as c:
        assert_reply(c.cmd("AUTH PLAIN " + plain_ir(ALICE, USERS[ALICE])), 235, "2.7.0", "good AUTH")


def test_bad_credentials_login(server):
    with session(server, "submissions") as c:
        r = c.cmd("AUTH LOGIN")
        assert r.code == 334, r
        r = c.cmd(base64.b64encode(ALICE.encode()).decode())
        assert r.code == 334, r
        assert_reply(c.cmd(base64.b64encode(b"not-the-password").decode(), timeout=30), 535, "5.7.8",
                     "AUTH LOGIN bad password")
        r = c.cmd("AUTH PLAIN " + plain_ir("nobody@example.test", "x"), timeout=30)
        assert_reply(r, 535, "5.7.8", "AUTH PLAIN unknown user")


def test_auth_cancel(server):
    with session(server, "submissions") as c:
        assert c.cmd("AUTH PLAIN").code == 334
        r = c.cmd("*")
        assert r.code == 501 and r.enhanced.startswith("5."), "AUTH cancelled with '*': expected 501 (RFC 4954 4), got %r" % r
        assert_session_alive(c)


def test_mail_from_not_owned(server):
    server.alias_add("sales@example.test", ALICE)
    with session(server, "submissions") as c:
        assert_reply(c.cmd("AUTH PLAIN " + plain_ir(ALICE, USERS[ALICE])), 235, "2.7.0", "AUTH")
        assert_reply(c.cmd("MAIL FROM:<%s>" % BOB), 553, "5.7.1", "MAIL FROM another user's address")
        assert_reply(c.cmd("MAIL FROM:<someone@remote.example>"), 553, "5.7.1", "MAIL FROM a foreign address")
        for own in (ALICE, "alice+lists@example.test", "sales@example.test", "Alice@Example.Test"):
            r = c.cmd("MAIL FROM:<%s>" % own)
            assert_reply(r, 250, "2.1.0", "MAIL FROM own address %s" % own)
            assert c.cmd("RSET").code == 250


# ---------------------------------------------------------------- disk full

@pytest.fixture
def tmpfs_dir(tmp_path):
    d = tmp_path / "tmpfs"
    d.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4M", "tmpfs", str(d)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        pytest.skip("cannot mount a tmpfs to simulate a full disk: %s" % p.stdout.decode().strip())
    yield d
    subprocess.run(["umount", "-l", str(d)])


def fill(path):
    """Writes path until the filesystem is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 65536, 4096, 1):
            chunk = b"\0" * size
            try:
                while True:
                    os.write(fd, chunk)
            except OSError:
                pass
    finally:
        os.close(fd)


def test_disk_full(tmpfs_dir, make_server):   # server stops before the unmount
    srv = make_server({"data_dir": str(tmpfs_dir / "data")})
    t = token("full")
    filler = str(tmpfs_dir / "filler")
    fill(filler)
    st = os.statvfs(str(tmpfs_dir))
    assert st.f_bavail * st.f_frsize < 8192, "tmpfs not full"
    msg = make_message(t, body=("w" * 998 + "\r\n") * 30)
    with session(srv) as c:
        steps = [("MAIL FROM:<sender@example.org>", 250), ("RCPT TO:<%s>" % ALICE, 250), ("DATA", 354)]
        r = None
        for line, ok in steps:
            r = c.cmd(line)
            if r.code != ok:
                break
        else:
            c.send(msg + b".\r\n")
            r = c.reply(timeout=30)
        assert_reply(r, 452, "4.3.1", "transaction on a full disk")
    assert srv.running(), "server died on a full disk"
    os.unlink(filler)
    assert srv.find(ALICE, t) == [], "message stored although refused"
    # space back: the same message goes through
    with session(srv) as c:
        assert_reply(c.transaction("sender@example.org", [ALICE], msg), 250, "2.0.0", "after freeing space")
    assert len(srv.find(ALICE, t)) == 1


# ---------------------------------------------------------------- timeouts, TLS, connections

def test_idle_timeout(make_server):
    srv = make_server({"limits": {"idle_timeout": "2s"}})
    with session(srv) as c:
        t0 = time.time()
        r = c.reply(timeout=10)
        waited = time.time() - t0
        assert_reply(r, 421, "4.4.2", "idle session")
        assert 1.5 <= waited <= 6, "421 after %.1fs with idle_timeout=2s" % waited
        assert c.is_closed(), "connection open after 421 4.4.2"
    with session(srv) as c:
        start_data(c)
        c.send(b"Subject: stalled\r\n\r\npartial")
        r = c.reply(timeout=10)
        assert_reply(r, 421, "4.4.2", "idle in DATA")
        assert c.is_closed()


@pytest.mark.parametrize("role", ["smtp", "submission"])
def test_starttls_pipelined_commands_discarded(server, role):
    with server.raw(role) as c:
        c.read_banner()
        c.ehlo()
        c.send("STARTTLS\r\nNOOP\r\n")
        r = c.reply()
        assert_reply(r, 220, "2.0.0", "STARTTLS")
        assert not c.buf, "bytes after 220 to STARTTLS: %r" % c.buf
        c.sock = tls_context().wrap_socket(c.sock)
        c.sock.settimeout(10)
        assert c.no_reply_within(1.0), "reply to a command pipelined before the TLS handshake: %r" % c.buf
        r = c.cmd("EHLO client.example.org")
        assert r.code == 250 and len(r.lines) > 1, "EHLO inside TLS: %r (NOOP answered?)" % r
        assert_session_alive(c)


def test_connections_per_ip(make_server):
    srv = make_server({"limits": {"connections_per_ip": 2}})
    time.sleep(0.3)             # let the start-up probes' closes be seen
    c1, c2 = srv.raw(), srv.raw()
    try:
        assert c1.read_banner().code == 220
        assert c2.read_banner().code == 220
        with srv.raw() as c3:
            r = c3.reply()
            assert_reply(r, 421, "4.7.0", "3rd connection with connections_per_ip=2")
            assert c3.is_closed(), "3rd connection left open"
        c1.cmd("QUIT")
        c1.close()
        deadline = time.time() + 3
        while True:
            with srv.raw() as c4:
                r = c4.reply()
                if r.code == 220 or time.time() > deadline:
                    break
            time.sleep(0.1)
        assert r.code == 220, "no connection slot after one closed: %r" % r
    finally:
        c1.close()
        c2.close()
