"""The login cache ([auth] cache_ttl): a repeated login skips the slow
password hash, yet a password change, a deleted account or a wrong
password take effect at once.  Driven through SMTP AUTH on submissions
and IMAP LOGIN, with the server's debug log showing which logins hit."""
import imaplib
import smtplib

import pytest

from harness import USERS, tls_context

ALICE = "alice@example.test"


def smtp_auth(srv, user, password):
    """The AUTH PLAIN reply code on submissions."""
    with smtplib.SMTP_SSL("127.0.0.1", srv.ports["submissions"], context=tls_context(),
                          timeout=15) as s:
        try:
            s.login(user, password)
            return 235
        except smtplib.SMTPAuthenticationError as e:
            return e.smtp_code


def imap_login(srv, user, password):
    m = imaplib.IMAP4_SSL("127.0.0.1", srv.ports["imaps"], ssl_context=tls_context(), timeout=15)
    try:
        m.login(user, password)
        return True
    except imaplib.IMAP4.error:
        return False
    finally:
        try:
            m.logout()
        except Exception:
            pass


@pytest.fixture
def srv(make_server):
    return make_server(config={"log_level": "debug", "auth": {"cache_ttl": "1h"}},
                       roles=("smtp", "submission", "submissions", "imaps"))


def test_repeated_login_and_wrong_password(srv):
    pw = USERS[ALICE]
    for _ in range(3):
        assert smtp_auth(srv, ALICE, pw) == 235
        assert imap_login(srv, ALICE, pw)
    # a remembered login never lets a wrong or empty password in
    assert smtp_auth(srv, ALICE, pw + "x") == 535
    assert smtp_auth(srv, ALICE, pw[:-1]) == 535
    assert not imap_login(srv, ALICE, "")
    assert smtp_auth(srv, ALICE, pw) == 235
    # the repeated logins were answered from the cache
    assert srv.log_text().count("event=login_cached account=%s" % ALICE) >= 5


def test_password_change_takes_effect_at_once(srv):
    old = USERS[ALICE]
    assert smtp_auth(srv, ALICE, old) == 235
    assert smtp_auth(srv, ALICE, old) == 235          # now remembered
    srv.cli("user", "passwd", ALICE, input=b"New-Password-42\n")
    assert smtp_auth(srv, ALICE, old) == 535
    assert not imap_login(srv, ALICE, old)
    assert smtp_auth(srv, ALICE, "New-Password-42") == 235
    assert imap_login(srv, ALICE, "New-Password-42")


def test_deleted_account_cannot_log_in(srv):
    user, pw = "zed-cache@example.test", "Zed-Password-7"
    srv.cli("user", "add", user, input=(pw + "\n").encode())
    assert smtp_auth(srv, user, pw) == 235
    assert smtp_auth(srv, user, pw) == 235
    srv.cli("user", "del", user)
    assert smtp_auth(srv, user, pw) == 535


def test_cache_off_still_authenticates(make_server):
    s = make_server(config={"log_level": "debug", "auth": {"cache_ttl": "0"}})
    assert smtp_auth(s, ALICE, USERS[ALICE]) == 235
    assert smtp_auth(s, ALICE, USERS[ALICE]) == 235
    assert smtp_auth(s, ALICE, "wrong") == 535
    assert "event=login_cached" not in s.log_text()


def test_bad_cache_ttl_is_a_config_error(make_server):
    s = make_server(config={"auth": {"cache_ttl": "soon"}}, users={}, start=False)
    p = s.cli("config", "check", check=False)
    out = (p.stdout + p.stderr).decode()
    assert p.returncode == 78, out
    assert "cache_ttl" in out or "soon" in out, out
