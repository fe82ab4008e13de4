"""Signals: SIGHUP reloads the configuration without dropping sessions;
SIGTERM stops accepting, lets an in-flight transaction finish, then exits."""
import signal
import socket
import time

from harness import assert_reply, make_message, token

ALICE = "alice@example.test"
RCPTS = ["alice@example.test", "bob@example.test", "carol@example.test"]


def third_rcpt(srv):
    with srv.raw() as c:
        c.read_banner()
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@example.org>").code == 250
        replies = [c.cmd("RCPT TO:<%s>" % r) for r in RCPTS]
        return replies[-1]


def test_sighup_reloads(make_server):
    srv = make_server()
    assert_reply(third_rcpt(srv), 250, "2.1.5", "3rd RCPT with recipients=100")
    old = srv.raw()
    old.read_banner()
    old.ehlo()
    pid = srv.proc.pid
    srv.update_config({"limits": {"recipients": 2}})
    srv.write_config()
    srv.signal(signal.SIGHUP)
    deadline = time.time() + 5
    while True:
        r = third_rcpt(srv)
        if r.code != 250 or time.time() > deadline:
            break
        time.sleep(0.2)
    assert_reply(r, 452, "4.5.3", "3rd RCPT on a new connection after reload to recipients=2")
    assert srv.running() and srv.proc.pid == pid
    # the session opened before the reload is still served
    assert_reply(old.cmd("NOOP"), 250, "2.0.0", "NOOP on a session older than the reload")
    old.close()


def test_sighup_bad_config_keeps_running(make_server):
    srv = make_server()
    srv.write_config(extra_text="no_such_key = 1\n")
    srv.signal(signal.SIGHUP)
    time.sleep(1)
    assert srv.running(), "a reload with a bad configuration stopped the server"
    assert_reply(third_rcpt(srv), 250, "2.1.5", "old settings still in force")
    srv.write_config()          # a clean file again for the next start


def test_sigterm_finishes_inflight_data(make_server):
    srv = make_server()
    t = token("term")
    c = srv.raw()
    c.read_banner()
    c.ehlo()
    assert c.cmd("MAIL FROM:<sender@example.org>").code == 250
    assert c.cmd("RCPT TO:<%s>" % ALICE).code == 250
    assert c.cmd("DATA").code == 354
    msg = make_message(t)
    c.send(msg[:40])
    srv.signal(signal.SIGTERM)
    time.sleep(0.5)
    # no new sessions once shutting down: refused, or greeted with 421
    try:
        with socket.create_connection(("127.0.0.1", srv.ports["smtp"]), 2) as s:
            s.settimeout(2)
            data = s.recv(512)
            assert data == b"" or data.startswith(b"421"), "new connection greeted during shutdown: %r" % data
    except (ConnectionRefusedError, ConnectionResetError, socket.timeout):
        pass
    assert srv.running(), "server exited with a transaction in flight"
    c.send(msg[40:] + b".\r\n")
    assert_reply(c.reply(), 250, "2.0.0", "end of DATA during shutdown")
    # the session may end now: 221 to QUIT, or 421 4.3.2 (shutting down)
    r = c.cmd("QUIT")
    assert r.code == 221 or (r.code, r.enhanced) == (421, "4.3.2"), "QUIT during shutdown: %r" % r
    c.close()
    rc = srv.wait_exit(10)
    assert rc == 0, "server exit code %r after SIGTERM and the last session" % rc
    srv.stop()
    srv.start()
    assert len(srv.find(ALICE, t)) == 1
