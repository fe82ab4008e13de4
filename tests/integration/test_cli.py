"""The admin commands: user, domain, alias, mailbox, queue, config check,
version; and their effect on a running server."""
import base64
import re

import pytest

from harness import POSTEL_BIN, Server, USERS, assert_reply, clean_env, make_message, token

ALICE = "alice@example.test"


def plain_ir(user, password):
    return base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()


def rcpt_reply(srv, rcpt):
    with srv.raw() as c:
        c.read_banner()
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@example.org>").code == 250
        return c.cmd("RCPT TO:<%s>" % rcpt)


def auth_reply(srv, user, password):
    with srv.raw("submissions") as c:
        c.read_banner()
        c.ehlo()
        return c.cmd("AUTH PLAIN " + plain_ir(user, password), timeout=30)


def out(p):
    return (p.stdout + p.stderr).decode(errors="replace")


@pytest.fixture
def offline(tmp_path):
    """A configured but not running server, for pure CLI tests."""
    return Server(tmp_path)


def test_user_add_list_del(offline):
    offline.user_add("erin@example.test", "erin-Secret-9")
    assert "erin@example.test" in out(offline.cli("user", "list"))
    p = offline.cli("user", "add", "erin@example.test", input=b"other\n", check=False)
    assert p.returncode != 0, "adding an existing user succeeded"
    p = offline.cli("user", "add", "not-an-address", input=b"pw-pw-pw\n", check=False)
    assert p.returncode != 0, "adding a malformed address succeeded"
    offline.cli("user", "del", "erin@example.test")
    assert "erin@example.test" not in out(offline.cli("user", "list"))
    p = offline.cli("user", "del", "erin@example.test", check=False)
    assert p.returncode != 0, "deleting a missing user succeeded"


def test_user_password_file(offline, tmp_path):
    f = tmp_path / "pw"
    f.write_text("file-Secret-7\n")
    offline.cli("user", "add", "frank@example.test", "--password-file", str(f))
    assert "frank@example.test" in out(offline.cli("user", "list"))


def test_new_account_mailboxes(offline):
    offline.user_add("gina@example.test", "gina-Secret-8")
    st = offline.mailbox_status("gina@example.test")
    for name in ("INBOX", "Sent", "Drafts", "Junk", "Trash", "Archive"):
        assert name in st, "mailbox %s missing: %r" % (name, st)
    assert st["INBOX"].get("messages") == 0
    assert offline.fetch("gina@example.test", 1) is None
    p = offline.cli("mailbox", "status", "nobody@example.test", check=False)
    assert p.returncode != 0, "status of a missing account succeeded"


def test_user_changes_seen_by_running_server(make_server):
    srv = make_server()
    assert_reply(auth_reply(srv, ALICE, USERS[ALICE]), 235, "2.7.0", "AUTH before passwd")
    srv.cli("user", "passwd", ALICE, input=b"new-Alice-Secret\n")
    assert_reply(auth_reply(srv, ALICE, "new-Alice-Secret"), 235, "2.7.0", "AUTH with the new password")
    assert_reply(auth_reply(srv, ALICE, USERS[ALICE]), 535, "5.7.8", "AUTH with the old password")
    srv.user_add("henry@example.test", "henry-Secret-1")
    assert_reply(rcpt_reply(srv, "henry@example.test"), 250, "2.1.5", "RCPT to a user added live")
    srv.cli("user", "del", "henry@example.test")
    assert_reply(rcpt_reply(srv, "henry@example.test"), 550, "5.1.1", "RCPT to a deleted user")


def test_domain_add_list_del(make_server):
    srv = make_server()
    assert_reply(rcpt_reply(srv, "x@example.org"), 554, "5.7.1", "RCPT to a non-local domain")
    srv.cli("domain", "add", "example.org")
    assert "example.org" in out(srv.cli("domain", "list")).split()
    assert_reply(rcpt_reply(srv, "x@example.org"), 550, "5.1.1", "unknown user of a domain added live")
    srv.user_add("ivan@example.org", "ivan-Secret-2")
    t = token("dom")
    with srv.raw() as c:
        c.read_banner()
        c.ehlo()
        assert c.transaction("sender@example.net", ["ivan@example.org"], make_message(t)).code == 250
    assert len(srv.find("ivan@example.org", t)) == 1
    srv.cli("user", "del", "ivan@example.org")
    srv.cli("domain", "del", "example.org")
    assert "example.org" not in out(srv.cli("domain", "list")).split()
    assert_reply(rcpt_reply(srv, "x@example.org"), 554, "5.7.1", "RCPT to a deleted domain")


def test_alias_add_list_del(make_server):
    srv = make_server()
    srv.alias_add("info@example.test", ALICE)
    srv.alias_add("@example.net", "bob@example.test")
    listing = out(srv.cli("alias", "list"))
    assert re.search(r"info@example\.test\s.*alice@example\.test", listing), listing
    assert re.search(r"(^|\s)@example\.net\s.*bob@example\.test", listing, re.M), listing
    assert_reply(rcpt_reply(srv, "info@example.test"), 250, "2.1.5", "RCPT to an alias")
    assert_reply(rcpt_reply(srv, "anyone@example.net"), 250, "2.1.5", "RCPT to a catch-all")
    srv.cli("alias", "del", "info@example.test", ALICE)
    srv.cli("alias", "del", "@example.net", "bob@example.test")
    listing = out(srv.cli("alias", "list"))
    assert "info@example.test" not in listing and "@example.net" not in listing, listing
    assert_reply(rcpt_reply(srv, "info@example.test"), 550, "5.1.1", "RCPT to a deleted alias")
    assert_reply(rcpt_reply(srv, "anyone@example.net"), 550, "5.1.1", "RCPT after catch-all deleted")


def test_config_check_good(offline):
    p = offline.cli("config", "check", check=False)
    assert p.returncode == 0, out(p)


def write(path, text):
    path.write_text(text)
    return str(path)


def run(*args):
    import subprocess
    return subprocess.run([POSTEL_BIN] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=30, env=clean_env(), stdin=subprocess.DEVNULL)


def test_config_check_errors_name_file_and_line(tmp_path):
    conf = write(tmp_path / "bad.conf",
                 "hostname = mx.example.test\n"                     # 1
                 "data_dir = %s\n"                                  # 2
                 "no_such_key = 1\n"                                # 3
                 "[limits]\n"                                       # 4
                 "message_size = lots\n"                            # 5
                 "recipients = 10\n"                                # 6
                 "[no_such_section]\n"                              # 7
                 "x = y\n"                                          # 8
                 "[auth]\n"                                         # 9
                 "plaintext_loopback = perhaps\n" % (tmp_path / "d"))  # 10
    p = run("-c", conf, "config", "check")
    text = out(p)
    assert p.returncode != 0, "config check accepted a bad file:\n" + text
    for lines, what in (((3,), "unknown key"), ((5,), "bad size"), ((7, 8), "unknown section"),
                        ((10,), "bad boolean")):
        assert any("%s:%d" % (conf, n) in text for n in lines), "no %s:%s (%s) in:\n%s" % (
            conf, "/".join(map(str, lines)), what, text)
    assert "%s:6" % conf not in text, "a good line reported:\n" + text


@pytest.mark.parametrize("body,line", [("[listen]\nsmtp = 127.0.0.1:99999\n", 2),
                                       ("[limits]\nidle_timeout = 5 fortnights\n", 2),
                                       ("log_level = loud\n", 1),
                                       ("[limits]\nrecipients = -3\n", 2)])
def test_config_check_bad_values(tmp_path, body, line):
    conf = write(tmp_path / "c.conf", body)
    p = run("-c", conf, "config", "check")
    assert p.returncode != 0, "accepted %r" % body
    assert "%s:%d" % (conf, line) in out(p), out(p)


def test_serve_refuses_bad_config(tmp_path):
    conf = write(tmp_path / "c.conf", "hostname = mx.example.test\nbogus = 1\n")
    p = run("-c", conf, "serve")
    assert p.returncode != 0
    assert "%s:2" % conf in out(p), out(p)


def test_version():
    p = run("version")
    text = out(p)
    assert p.returncode == 0, text
    assert re.search(r"postel\D*\d+\.\d+", text, re.I), text
    for lib in ("openssl", "libevent", "sqlite"):
        assert lib in text.lower(), "version output does not name %s:\n%s" % (lib, text)


def test_unknown_command_is_usage_error():
    p = run("frobnicate")
    assert p.returncode == 64, "unknown subcommand exited %d, expected 64 (EX_USAGE)" % p.returncode


def test_queue_list_empty(offline):
    p = offline.cli("queue", "list", check=False)
    assert p.returncode == 0, out(p)
