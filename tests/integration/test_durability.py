"""Never lose an acknowledged message (DESIGN section 1): concurrent load
stores every message exactly once, a restart keeps them, and a SIGKILL in
the middle of a load loses none that got its 250 and duplicates none."""
import re
import smtplib
import threading
import time

from harness import make_message

RCPT = "alice@example.test"
TOKEN_RE = re.compile(rb"Subject: test (dur-[0-9a-z-]+)")


def body_for(tok):
    # a recognisable end, to catch truncated messages
    return "payload of %s\r\n%s\r\nEND-%s\r\n" % (tok, "0123456789abcdef" * 40, tok)


def sender_thread(port, prefix, count, acked, errors, stop=None):
    """Sends count messages over one connection; records each token that
    got 250 after DATA in acked."""
    try:
        s = smtplib.SMTP("127.0.0.1", port, timeout=30)
        s.ehlo("load.example.org")
        for i in range(count):
            if stop is not None and stop.is_set():
                break
            tok = "dur-%s-%d" % (prefix, i)
            s.mail("load@example.org")
            code, resp = s.rcpt(RCPT)
            if code != 250:
                raise AssertionError("RCPT %d %r" % (code, resp))
            code, resp = s.data(make_message(tok, body=body_for(tok)))
            if code != 250:
                raise AssertionError("DATA %d %r" % (code, resp))
            acked.append(tok)
        s.quit()
    except Exception as e:      # noqa: BLE001 - reported by the caller
        errors.append("%s: %r" % (prefix, e))


def stored_tokens(srv):
    """{token: copies} over alice's INBOX; asserts each message is whole."""
    counts = {}
    for m in srv.messages(RCPT, workers=8):
        mt = TOKEN_RE.search(m)
        assert mt, "stored message without a token: %r" % m[:300]
        tok = mt.group(1).decode()
        assert m.endswith(("END-%s\r\n" % tok).encode()), "stored message %s is truncated" % tok
        counts[tok] = counts.get(tok, 0) + 1
    return counts


def test_concurrent_senders_then_restart(make_server):
    srv = make_server({"log_level": "info", "limits": {"connections_per_ip": 50}})
    acked, errors = [], []
    threads = [threading.Thread(target=sender_thread,
                                args=(srv.ports["smtp"], "c%d" % n, 50, acked, errors))
               for n in range(20)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    elapsed = time.time() - t0
    assert not errors, errors[:5]
    assert len(acked) == 1000, len(acked)
    print("1000 messages from 20 senders in %.1fs (%.0f msg/s)" % (elapsed, 1000 / elapsed))

    assert srv.count(RCPT) == 1000, "mailbox status: %r" % srv.mailbox_status(RCPT).get("INBOX")
    counts = stored_tokens(srv)
    dups = {k: v for k, v in counts.items() if v > 1}
    assert not dups, "stored more than once: %r" % list(dups.items())[:10]
    assert set(counts) == set(acked), "missing: %r" % sorted(set(acked) - set(counts))[:10]

    srv.restart()
    assert srv.count(RCPT) == 1000, "after restart: %r" % srv.mailbox_status(RCPT).get("INBOX")
    assert stored_tokens(srv) == counts


def test_kill9_during_load(make_server):
    srv = make_server({"log_level": "info", "limits": {"connections_per_ip": 50}})
    acked, errors = [], []
    stop = threading.Event()
    threads = [threading.Thread(target=sender_thread,
                                args=(srv.ports["smtp"], "k%d" % n, 400, acked, errors, stop))
               for n in range(10)]
    for t in threads:
        t.start()
    # kill once a good number are acknowledged (or after 4 s at most)
    deadline = time.time() + 4
    while len(acked) < 300 and time.time() < deadline and any(t.is_alive() for t in threads):
        time.sleep(0.01)
    srv.kill9()
    snapshot = list(acked)      # everything acknowledged before the kill
    stop.set()
    for t in threads:
        t.join(30)
    assert len(snapshot) > 0, "no message acknowledged before the kill: %r" % errors[:3]
    acked_all = list(acked)     # a 250 read just before the kill counts too

    srv.start()
    counts = stored_tokens(srv)
    missing = [t for t in acked_all if counts.get(t, 0) == 0]
    dup_acked = [t for t in acked_all if counts.get(t, 0) > 1]
    dup_other = [t for t, n in counts.items() if n > 1 and t not in acked_all]
    print("acknowledged %d, stored %d, unacknowledged stored %d" % (
        len(acked_all), sum(counts.values()), len(set(counts) - set(acked_all))))
    assert not missing, "%d acknowledged messages lost after kill -9: %r" % (len(missing), missing[:10])
    assert not dup_acked, "acknowledged messages stored twice: %r" % dup_acked[:10]
    assert not dup_other, "unacknowledged messages stored twice: %r" % dup_other[:10]
    # the recovered server keeps working
    t = "dur-after-kill"
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=10) as s:
        s.sendmail("load@example.org", [RCPT], make_message(t, body=body_for(t)))
    assert stored_tokens(srv).get(t) == 1
