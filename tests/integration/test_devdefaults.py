"""`postel serve` without configuration (DESIGN section 4), as `make run`
starts it: data in ./postel-data, fixed ports (10025, 10587, 10465, ...),
demo@localhost with a random password printed once, plaintext AUTH
allowed from loopback."""
import os
import re
import smtplib
import subprocess

from harness import dev_password, header_values, make_message, token


def test_first_start_creates_demo_account(dev_server):
    pw = dev_password(dev_server)
    assert len(pw) >= 8, "demo password %r is short" % pw
    lines = [l for l in dev_server.log_text().splitlines() if "password=" in l]
    assert len(lines) == 1, "password printed %d times: %r" % (len(lines), lines)
    assert "demo@localhost" in lines[0] or "demo@localhost" in dev_server.log_text()
    assert os.path.isdir(dev_server.data_dir), "./postel-data not created in the working directory"
    out = dev_server.cli("user", "list").stdout.decode()
    assert "demo@localhost" in out


def test_swaks_to_demo(dev_server):
    t = token("devswaks")
    p = subprocess.run(["swaks", "--server", "127.0.0.1:10025", "--to", "demo@localhost",
                        "--from", "someone@example.org", "--header", "Subject: %s" % t],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    assert p.returncode == 0, p.stdout.decode(errors="replace")
    assert len(dev_server.find("demo@localhost", t)) == 1


def test_loopback_plaintext_auth(dev_server):
    pw = dev_password(dev_server)
    t = token("devauth")
    with smtplib.SMTP("127.0.0.1", 10587, timeout=10) as s:
        s.ehlo("client.example.org")
        assert "auth" in s.esmtp_features, "no AUTH offered on 10587 without TLS in dev mode"
        code, resp = s.login("demo@localhost", pw)
        assert code == 235 and resp.startswith(b"2.7.0"), (code, resp)
        s.sendmail("demo@localhost", ["demo@localhost"], make_message(t, sender="demo@localhost",
                                                                       to="demo@localhost"))
    [m] = dev_server.find("demo@localhost", t)
    assert header_values(m, "Return-Path") == ["<demo@localhost>"]


def test_restart_keeps_data_and_password_quiet(dev_server):
    pw = dev_password(dev_server)
    before = dev_server.count("demo@localhost")
    dev_server.restart()
    later = dev_server.log_text(since_start=True)
    assert not re.search(r"password=", later), "password printed again on the second start:\n" + later
    assert dev_server.count("demo@localhost") == before
    with smtplib.SMTP("127.0.0.1", 10587, timeout=10) as s:
        s.ehlo("client.example.org")
        assert s.login("demo@localhost", pw)[0] == 235
