"""SMTP server basics: greeting, EHLO keywords, simple commands, delivery
into local mailboxes with the trace headers, addressing (+tag, aliases,
catch-all), DSN parameters, BDAT, pipelining, SMTPUTF8 and 8-bit bodies."""
import re

import pytest

from harness import (USERS, assert_reply, header_values, make_message, tls_context,
                     token)

ALICE = "alice@example.test"
BOB = "bob@example.test"
QUEUED = re.compile(r"^2\.0\.0 Ok: queued as \S+")


def send(server, rcpts, msg, sender="sender@example.org", role="smtp", starttls=False,
         mail_options=(), rcpt_options=()):
    """One transaction with smtplib; returns the reply to the end of DATA."""
    with server.smtp(role) as s:
        s.ehlo("client.example.org")
        if starttls:
            s.starttls(context=tls_context())
            s.ehlo("client.example.org")
        code, resp = s.mail(sender, list(mail_options))
        assert code == 250, (code, resp)
        for r in rcpts:
            code, resp = s.rcpt(r, list(rcpt_options))
            assert code == 250, (r, code, resp)
        return s.data(msg)


# ---------------------------------------------------------------- greeting, EHLO

def test_banner(server):
    with server.raw() as c:
        b = c.read_banner()
        assert b.code == 220
        assert re.match(r"mx\.example\.test ESMTP\b", b.lines[0]), b


def test_ehlo_keywords_smtp(server):
    with server.smtp() as s:
        code, _ = s.ehlo("client.example.org")
        assert code == 250
        f = s.esmtp_features
        for kw in ("pipelining", "size", "8bitmime", "smtputf8", "enhancedstatuscodes",
                   "chunking", "starttls", "dsn"):
            assert kw in f, "EHLO on smtp lacks %s: %r" % (kw.upper(), f)
        assert f["size"].strip() == str(25 * 1024 * 1024), "SIZE %r, expected 26214400 (25M)" % f["size"]
        assert "auth" not in f, "AUTH advertised on the smtp role: %r" % f["auth"]
        # nor after STARTTLS: the MX role does not authenticate
        s.starttls(context=tls_context())
        s.ehlo("client.example.org")
        assert "auth" not in s.esmtp_features
        assert "starttls" not in s.esmtp_features, "STARTTLS advertised again inside TLS"


def test_ehlo_keywords_submission(server):
    with server.smtp("submission") as s:
        s.ehlo("client.example.org")
        assert "starttls" in s.esmtp_features
        s.starttls(context=tls_context())
        s.ehlo("client.example.org")
        f = s.esmtp_features
        assert "auth" in f, "no AUTH after STARTTLS on submission: %r" % f
        mechs = f["auth"].upper().split()
        assert "PLAIN" in mechs and "LOGIN" in mechs, mechs
        assert "starttls" not in f
        for kw in ("pipelining", "size", "8bitmime", "enhancedstatuscodes", "chunking"):
            assert kw in f, "EHLO on submission lacks %s" % kw.upper()


def test_ehlo_keywords_submissions(server):
    with server.smtp("submissions") as s:
        s.ehlo("client.example.org")
        f = s.esmtp_features
        assert "auth" in f, "no AUTH on submissions: %r" % f
        assert "starttls" not in f, "STARTTLS advertised on implicit TLS"


def test_helo(server):
    with server.raw() as c:
        c.read_banner()
        r = c.cmd("HELO client.example.org")
        assert r.code == 250 and len(r.lines) == 1, r
        # HELO sessions can send mail too (enhanced codes are an EHLO
        # extension, RFC 2034, so only the basic codes are checked)
        assert c.cmd("MAIL FROM:<sender@example.org>").code == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE).code == 250


def test_simple_commands(server):
    with server.raw() as c:
        c.read_banner()
        c.ehlo()
        assert_reply(c.cmd("NOOP"), 250, "2.0.0", "NOOP")
        assert_reply(c.cmd("RSET"), 250, "2.0.0", "RSET")
        r = c.cmd("VRFY alice@example.test")
        assert r.code == 252 and r.enhanced.startswith("2."), "VRFY: expected 252 2.x.x, got %r" % r
        r = c.cmd("HELP")
        assert r.code == 214 and r.enhanced.startswith("2."), "HELP: expected 214 2.x.x, got %r" % r
        assert_reply(c.cmd("QUIT"), 221, "2.0.0", "QUIT")
        assert c.is_closed(), "connection still open after QUIT"


@pytest.mark.parametrize("role", ["smtp", "submission", "submissions"])
def test_quit_inside_tls(server, role):
    """221 to QUIT must reach the client inside TLS too (before the close)."""
    with server.raw(role) as c:
        c.read_banner()
        c.ehlo()
        if role != "submissions":
            c.starttls()
            c.ehlo()
        assert_reply(c.cmd("QUIT"), 221, "2.0.0", "QUIT inside TLS on %s" % role)


def test_postmaster_accepted(server):
    """RFC 5321 4.5.1: postmaster at every local domain, without setup."""
    with server.raw() as c:
        c.read_banner()
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@example.org>").code == 250
        assert_reply(c.cmd("RCPT TO:<postmaster@example.test>"), 250, "2.1.5", "RCPT postmaster@")
        assert_reply(c.cmd("RCPT TO:<Postmaster>"), 250, "2.1.5", "RCPT <Postmaster> (no domain)")


def test_rset_clears_transaction(server):
    with server.raw() as c:
        c.read_banner()
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@example.org>").code == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE).code == 250
        assert_reply(c.cmd("RSET"), 250, "2.0.0", "RSET")
        assert_reply(c.cmd("DATA"), 503, "5.5.1", "DATA after RSET")


# ---------------------------------------------------------------- delivery

def test_delivery_headers_plain(server):
    t = token("plain")
    code, resp = send(server, [ALICE], make_message(t))
    assert code == 250 and QUEUED.match(resp.decode()), (code, resp)
    [m] = server.find(ALICE, t)
    assert header_values(m, "Return-Path") == ["<sender@example.org>"], header_values(m, "Return-Path")
    assert header_values(m, "Delivered-To") == [ALICE]
    rec = header_values(m, "Received")
    assert rec, "no Received header"
    top = rec[0]
    assert re.search(r"\bwith ESMTP\b(?!S)", top), "Received lacks 'with ESMTP': %r" % top
    assert "mx.example.test" in top, top
    assert "client.example.org" in top, "Received lacks the EHLO name: %r" % top
    assert "127.0.0.1" in top, top
    # the message itself follows the trace headers unchanged
    assert m.endswith(make_message(t)), "stored message does not end with the sent bytes"


def test_delivery_headers_starttls(server):
    t = token("tls")
    with server.smtp() as s:
        s.ehlo("client.example.org")
        s.starttls(context=tls_context())
        version, cipher = s.sock.version(), s.sock.cipher()[0]
        s.ehlo("client.example.org")
        s.mail("sender@example.org")
        s.rcpt(ALICE)
        code, resp = s.data(make_message(t))
    assert code == 250, (code, resp)
    [m] = server.find(ALICE, t)
    top = header_values(m, "Received")[0]
    assert re.search(r"\bwith ESMTPS\b", top), "Received lacks 'with ESMTPS': %r" % top
    assert version in top, "Received lacks TLS version %s: %r" % (version, top)
    assert cipher in top, "Received lacks cipher %s: %r" % (cipher, top)


def test_plus_tag(server):
    t = token("tag")
    code, _ = send(server, ["alice+news@example.test"], make_message(t))
    assert code == 250
    assert len(server.find(ALICE, t)) == 1


def test_recipient_case_insensitive_domain(server):
    t = token("case")
    code, _ = send(server, ["alice@EXAMPLE.test"], make_message(t))
    assert code == 250
    assert len(server.find(ALICE, t)) == 1


def test_alias_and_catch_all(server):
    server.alias_add("info@example.test", ALICE)
    server.alias_add("@example.net", BOB)
    t1, t2 = token("alias"), token("catchall")
    assert send(server, ["info@example.test"], make_message(t1))[0] == 250
    assert send(server, ["whoever@example.net"], make_message(t2))[0] == 250
    assert len(server.find(ALICE, t1)) == 1
    assert len(server.find(BOB, t2)) == 1
    assert server.find(BOB, t1) == [] and server.find(ALICE, t2) == []


def test_multiple_recipients(server):
    t = token("multi")
    code, _ = send(server, [ALICE, BOB, "carol@example.test"], make_message(t))
    assert code == 250
    for acct in (ALICE, BOB, "carol@example.test"):
        got = server.find(acct, t)
        assert len(got) == 1, "%s has %d copies" % (acct, len(got))
        assert header_values(got[0], "Delivered-To") == [acct]


def test_dsn_parameters(server):
    t = token("dsn")
    with server.raw() as c:
        c.read_banner()
        c.ehlo()
        assert_reply(c.cmd("MAIL FROM:<sender@example.org> RET=HDRS ENVID=QQ314159"), 250, "2.1.0", "MAIL+DSN")
        assert_reply(c.cmd("RCPT TO:<%s> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;%s" % (ALICE, ALICE)),
                     250, "2.1.5", "RCPT+NOTIFY/ORCPT")
        assert_reply(c.cmd("RCPT TO:<%s> NOTIFY=NEVER" % BOB), 250, "2.1.5", "RCPT NOTIFY=NEVER")
        assert c.cmd("DATA").code == 354
        c.send(make_message(t) + b".\r\n")
        assert_reply(c.reply(), 250, "2.0.0", "end of DATA")
    assert len(server.find(ALICE, t)) == 1
    assert len(server.find(BOB, t)) == 1


def test_bdat_chunks_byte_exact(server):
    t = token("bdat")
    # lines that DATA would dot-stuff or end on: BDAT carries them verbatim
    body = (b"From: <sender@example.org>\r\nTo: <alice@example.test>\r\nSubject: bdat " + t.encode() +
            b"\r\n\r\n.\r\n..leading dots\r\n.\r\nend of line split across chunks\r\n" +
            bytes(range(0x80, 0x100)) + b"\r\nlast line\r\n")
    cut1, cut2 = 60, body.index(b"split across chunks") + 20   # cut2 lands between CR and LF
    assert body[cut2 - 1:cut2] == b"\r"
    chunks = [body[:cut1], body[cut1:cut2], body[cut2:]]
    with server.raw() as c:
        c.read_banner()
        assert "CHUNKING" in " ".join(c.ehlo().lines).upper()
        assert c.cmd("MAIL FROM:<sender@example.org> BODY=8BITMIME").code == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE).code == 250
        for i, ch in enumerate(chunks):
            last = i == len(chunks) - 1
            c.send(b"BDAT %d%s\r\n" % (len(ch), b" LAST" if last else b"") + ch)
            r = c.reply()
            assert_reply(r, 250, "2.0.0", "BDAT chunk %d%s" % (i, " LAST" if last else ""))
        assert QUEUED.match(r.lines[-1]), r
    [m] = server.find(ALICE, t)
    assert m.endswith(body), "BDAT message not stored byte-exact"


def test_bdat_after_data_mix_rejected_cleanly(server):
    """BDAT then DATA in one transaction is a sequence error (RFC 3030 2)."""
    with server.raw() as c:
        c.read_banner()
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@example.org>").code == 250
        assert c.cmd("RCPT TO:<%s>" % ALICE).code == 250
        c.send(b"BDAT 5\r\nabcde")
        assert c.reply().code == 250
        assert_reply(c.cmd("DATA"), 503, "5.5.1", "DATA after BDAT")


def test_pipelined_transaction(server):
    t = token("pipe")
    with server.raw() as c:
        c.read_banner()
        c.ehlo()
        c.send("MAIL FROM:<sender@example.org>\r\nRCPT TO:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (ALICE, BOB))
        assert_reply(c.reply(), 250, "2.1.0", "pipelined MAIL")
        assert_reply(c.reply(), 250, "2.1.5", "pipelined RCPT 1")
        assert_reply(c.reply(), 250, "2.1.5", "pipelined RCPT 2")
        assert c.reply().code == 354
        # the end of data, a new transaction and QUIT in one write
        c.send(make_message(t) + b".\r\nRSET\r\nNOOP\r\nQUIT\r\n")
        assert_reply(c.reply(), 250, "2.0.0", "end of DATA")
        assert_reply(c.reply(), 250, "2.0.0", "pipelined RSET")
        assert_reply(c.reply(), 250, "2.0.0", "pipelined NOOP")
        assert_reply(c.reply(), 221, "2.0.0", "pipelined QUIT")
    assert len(server.find(ALICE, t)) == 1
    assert len(server.find(BOB, t)) == 1


def test_smtputf8_sender(server):
    t = token("utf8s")
    sender = "pelé@example.org"
    msg = make_message(t, sender=sender)      # UTF-8 in From: too (RFC 6532)
    with server.raw() as c:
        c.read_banner()
        c.ehlo()
        r = c.cmd("MAIL FROM:<%s> SMTPUTF8 BODY=8BITMIME" % sender)
        assert_reply(r, 250, "2.1.0", "MAIL with UTF-8 sender")
        assert c.cmd("RCPT TO:<%s>" % ALICE).code == 250
        assert c.cmd("DATA").code == 354
        c.send(msg + b".\r\n")
        assert_reply(c.reply(), 250, "2.0.0", "end of DATA")
    [m] = server.find(ALICE, t)
    assert header_values(m, "Return-Path") == ["<%s>" % sender]


def test_smtputf8_recipient(server):
    rcpt = "jürgen@example.test"
    server.user_add(rcpt, "jurgen-Secret-5")
    t = token("utf8r")
    with server.raw() as c:
        c.read_banner()
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@example.org> SMTPUTF8").code == 250
        assert_reply(c.cmd("RCPT TO:<%s>" % rcpt), 250, "2.1.5", "RCPT to a UTF-8 local part")
        assert c.cmd("DATA").code == 354
        c.send(make_message(t, to=rcpt) + b".\r\n")
        assert_reply(c.reply(), 250, "2.0.0", "end of DATA")
    [m] = server.find(rcpt, t)
    assert header_values(m, "Delivered-To") == [rcpt]


def test_8bit_body_byte_exact(server):
    t = token("8bit")
    body = ("Grüße aus Köln – ünïcödé\r\n".encode() + bytes(b for b in range(0x80, 0x100)) +
            b"\r\n\x01\x02\x7f tab\there\r\n")
    msg = make_message(t, body="", extra_headers="Content-Type: text/plain; charset=utf-8\r\n"
                       "Content-Transfer-Encoding: 8bit\r\n") + body
    with server.raw() as c:
        c.read_banner()
        c.ehlo()
        r = c.transaction("sender@example.org", [ALICE], msg, mail_params=" BODY=8BITMIME")
        assert_reply(r, 250, "2.0.0", "end of DATA")
    [m] = server.find(ALICE, t)
    assert m.endswith(msg), "8-bit message not stored byte-exact"


def test_dot_stuffing_undone(server):
    t = token("dots")
    msg = make_message(t, body=".leading dot\r\n..two dots\r\n.\r\n")
    with server.raw() as c:
        c.read_banner()
        c.ehlo()
        assert c.transaction("sender@example.org", [ALICE], msg).code == 250
    [m] = server.find(ALICE, t)
    assert m.endswith(msg), "dot-stuffing not undone exactly"


def test_null_sender(server):
    t = token("null")
    with server.raw() as c:
        c.read_banner()
        c.ehlo()
        assert c.transaction("", [ALICE], make_message(t)).code == 250
    [m] = server.find(ALICE, t)
    assert header_values(m, "Return-Path") == ["<>"]


def test_swaks_delivery(server):
    import subprocess
    t = token("swaks")
    p = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % server.ports["smtp"],
                        "--from", "sender@example.org", "--to", ALICE,
                        "--header", "Subject: %s" % t, "--helo", "swaks.example.org"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    assert p.returncode == 0, p.stdout.decode(errors="replace")
    assert len(server.find(ALICE, t)) == 1


def test_curl_delivery(server, tmp_path):
    import subprocess
    t = token("curl")
    f = tmp_path / "msg.eml"
    f.write_bytes(make_message(t))
    p = subprocess.run(["curl", "-sS", "--url", "smtp://127.0.0.1:%d/client.example.org" % server.ports["smtp"],
                        "--mail-from", "sender@example.org", "--mail-rcpt", ALICE, "--upload-file", str(f)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    assert p.returncode == 0, p.stdout.decode(errors="replace")
    [m] = server.find(ALICE, t)
    assert m.endswith(make_message(t))


def test_unused_users_exist(server):
    # sanity: the CLI view of the accounts the fixture made
    out = server.cli("user", "list").stdout.decode()
    for addr in USERS:
        assert addr in out


@pytest.mark.parametrize("size", [1000, 256 * 1024 - 200, 256 * 1024 + 200, 3 * 1024 * 1024])
def test_message_sizes_around_the_memory_spool_stored_exactly(server, size):
    """MX mail is held whole for the SPF/DKIM/DMARC and spam checks: in
    memory up to 256 KB, in a scratch file beyond.  Either way the stored
    copy carries the message byte for byte after our trace headers."""
    t = token("size%d" % size)
    line = (b"0123456789" * 7) + b"\r\n"          # 72 octets per line
    body = line * (size // len(line))
    msg = make_message(t).replace(b"\r\n\r\n", b"\r\n\r\n" + body, 1)
    code, resp = send(server, [ALICE], msg)
    assert code == 250, (code, resp)
    [m] = server.find(ALICE, t)
    assert m.endswith(msg), "stored copy differs from what was sent (%d octets)" % len(msg)
