"""Submission (587 with STARTTLS, 465 with implicit TLS): AUTH PLAIN and
LOGIN with and without an initial response, delivery of submitted mail to
local users, queueing of mail for other domains, and plaintext AUTH from
loopback under the development defaults."""
import base64
import re
import time
import smtplib
import subprocess

import pytest

from harness import (USERS, assert_reply, dev_password, header_values, make_message,
                     tls_context, token)

ALICE = "alice@example.test"
BOB = "bob@example.test"


def login(server, role, user=ALICE, mech="PLAIN", initial_response=True):
    s = server.smtp(role)
    s.ehlo("client.example.org")
    if role == "submission":
        s.starttls(context=tls_context())
        s.ehlo("client.example.org")
    s.user, s.password = user, USERS[user]
    method = s.auth_plain if mech == "PLAIN" else s.auth_login
    code, resp = s.auth(mech, method, initial_response_ok=initial_response)
    assert_reply((code, resp), 235, "2.7.0", "AUTH %s %s IR on %s" % (
        mech, "with" if initial_response else "without", role))
    return s


@pytest.mark.parametrize("role", ["submission", "submissions"])
@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
@pytest.mark.parametrize("ir", [True, False], ids=["ir", "no-ir"])
def test_auth_and_submit_local(server, role, mech, ir):
    t = token("sub")
    with login(server, role, mech=mech, initial_response=ir) as s:
        assert s.mail(ALICE)[0] == 250
        assert s.rcpt(BOB)[0] == 250
        code, resp = s.data(make_message(t, sender=ALICE, to=BOB))
        assert code == 250 and re.match(rb"2\.0\.0 Ok: queued as \S+", resp), (code, resp)
    [m] = server.find(BOB, t)
    assert header_values(m, "Return-Path") == ["<%s>" % ALICE]
    top = header_values(m, "Received")[0]
    assert re.search(r"\bwith ESMTPSA\b", top), "Received lacks 'with ESMTPSA' (RFC 3848): %r" % top


def test_second_auth_refused(server):
    with login(server, "submissions") as s:
        ir = base64.b64encode(("\0%s\0%s" % (ALICE, USERS[ALICE])).encode()).decode()
        code, resp = s.docmd("AUTH", "PLAIN " + ir)
        assert_reply((code, resp), 503, "5.5.1", "AUTH after successful AUTH (RFC 4954 4)")


def test_submit_remote_is_queued(server):
    t = token("remote")
    rcpt = "friend-%s@elsewhere.example" % t
    with login(server, "submissions") as s:
        assert s.mail(ALICE)[0] == 250
        assert_reply(s.rcpt(rcpt), 250, "2.1.5", "RCPT to a remote domain after AUTH")
        code, resp = s.data(make_message(t, sender=ALICE, to=rcpt))
        assert code == 250, (code, resp)
        qid = re.search(rb"queued as (\S+)", resp).group(1).decode()
    assert_queued_or_bounced(server, rcpt, qid)


def assert_queued_or_bounced(server, rcpt, qid=None, limit=15.0):
    """The remote recipient was queued: either it still waits in `postel
    queue list` (its MX is unreachable: deferred) or the queue has already
    tried it and, the test DNS knowing no such domain, bounced it into the
    local sender's INBOX (RFC 3464 report naming the recipient)."""
    deadline = time.time() + limit
    while True:
        out = server.cli("queue", "list").stdout.decode()
        if rcpt in out:
            if qid is None:
                return
            assert qid in out, "queue id %s not in `postel queue list`:\n%s" % (qid, out)
            p = server.cli("queue", "show", qid, check=False)
            show = p.stdout.decode()
            if p.returncode == 0:
                assert rcpt in show and ALICE in show, show
                return
            # bounced between the two commands: the report is on its way
            assert p.returncode == 66, (p.returncode, p.stderr)
        bounces = [m for m in server.messages(ALICE)
                   if b"multipart/report" in m and rcpt.encode() in m]
        if bounces:
            assert b"Action: failed" in bounces[0], bounces[0][:2000]
            assert b"Status: 5." in bounces[0], bounces[0][:2000]
            return
        assert time.time() < deadline, \
            "%s neither queued nor bounced:\n%s\n%s" % (rcpt, out, server.log_tail())
        time.sleep(0.2)


def test_mixed_local_and_remote(server):
    t = token("mixed")
    rcpt = "pal-%s@elsewhere.example" % t
    with login(server, "submission") as s:
        s.sendmail(ALICE, [BOB, rcpt], make_message(t, sender=ALICE, to=BOB))
    assert len(server.find(BOB, t)) == 1
    assert_queued_or_bounced(server, rcpt)


def test_curl_submission(server, tmp_path):
    t = token("curlsub")
    f = tmp_path / "m.eml"
    f.write_bytes(make_message(t, sender=ALICE, to=BOB))
    p = subprocess.run(["curl", "-sS", "--ssl-reqd", "-k", "--url",
                        "smtp://127.0.0.1:%d/client.example.org" % server.ports["submission"],
                        "--user", "%s:%s" % (ALICE, USERS[ALICE]), "--mail-from", ALICE,
                        "--mail-rcpt", BOB, "--upload-file", str(f)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    assert p.returncode == 0, p.stdout.decode(errors="replace")
    assert len(server.find(BOB, t)) == 1


def test_curl_submissions(server, tmp_path):
    t = token("curlsubs")
    f = tmp_path / "m.eml"
    f.write_bytes(make_message(t, sender=ALICE, to=BOB))
    p = subprocess.run(["curl", "-sS", "-k", "--url",
                        "smtps://127.0.0.1:%d/client.example.org" % server.ports["submissions"],
                        "--user", "%s:%s" % (ALICE, USERS[ALICE]), "--login-options", "AUTH=LOGIN",
                        "--mail-from", ALICE, "--mail-rcpt", BOB, "--upload-file", str(f)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    assert p.returncode == 0, p.stdout.decode(errors="replace")
    assert len(server.find(BOB, t)) == 1


def test_swaks_submission(server):
    sup = subprocess.run(["swaks", "--support"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout
    if b"TLS supported" not in sup:
        pytest.skip("swaks lacks TLS: libnet-ssleay-perl is not installed")
    t = token("swakssub")
    p = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % server.ports["submission"], "--tls",
                        "--auth", "LOGIN", "--auth-user", ALICE, "--auth-password", USERS[ALICE],
                        "--from", ALICE, "--to", BOB, "--header", "Subject: %s" % t],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    assert p.returncode == 0, p.stdout.decode(errors="replace")
    assert len(server.find(BOB, t)) == 1


def test_dev_defaults_loopback_plaintext_auth(dev_server):
    pw = dev_password(dev_server)
    t = token("devsub")
    with smtplib.SMTP("127.0.0.1", 10587, timeout=10) as s:
        s.ehlo("client.example.org")
        s.user, s.password = "demo@localhost", pw
        assert_reply(s.auth("PLAIN", s.auth_plain), 235, "2.7.0", "plaintext AUTH PLAIN from loopback")
        code, resp = s.mail("demo@localhost")
        assert code == 250
        assert s.rcpt("demo@localhost")[0] == 250
        assert s.data(make_message(t, sender="demo@localhost", to="demo@localhost"))[0] == 250
    assert len(dev_server.find("demo@localhost", t)) == 1
    # a wrong password is still refused
    with smtplib.SMTP("127.0.0.1", 10587, timeout=10) as s:
        s.ehlo("client.example.org")
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s.login("demo@localhost", pw + "x")
        assert e.value.smtp_code == 535
