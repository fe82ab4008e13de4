"""A mailbox of 10,000 messages through imaplib and curl: SELECT counts
them, FETCH 1:* FLAGS and UID SEARCH return every one, single messages
fetch byte-exact from both ends, STORE and EXPUNGE on a range work, and a
second session sees the result."""
import imaplib
import smtplib
import subprocess
import threading

import pytest

ALICE = ("alice@example.test", "alice-Secret-1")
N = 10000
SENDERS = 8


@pytest.fixture(scope="module")
def big(module_server):
    srv = module_server({"auth": {"plaintext_loopback": "yes"}},
                        roles=("smtp", "imap"))
    errors = []

    def send(k):
        try:
            with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=60) as s:
                for i in range(k, N, SENDERS):
                    msg = ("From: <s@example.net>\r\nTo: <%s>\r\nSubject: big %05d\r\n"
                           "Message-ID: <big-%d@example.net>\r\n\r\nmessage number %05d\r\n"
                           % (ALICE[0], i, i, i))
                    s.sendmail("s@example.net", [ALICE[0]], msg)
        except Exception as e:  # reported below
            errors.append(e)
    threads = [threading.Thread(target=send, args=(k,)) for k in range(SENDERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert not errors, errors[:3]
    return srv


def login(srv):
    m = imaplib.IMAP4("127.0.0.1", srv.ports["imap"], timeout=60)
    m.login(*ALICE)
    return m


def test_select_fetch_search_10000(big):
    m = login(big)
    typ, data = m.select("INBOX")
    assert typ == "OK" and int(data[0]) == N
    typ, data = m.fetch("1:*", "(UID FLAGS)")
    assert typ == "OK"
    lines = [d for d in data if isinstance(d, bytes)]
    assert len(lines) == N
    typ, data = m.uid("SEARCH", "ALL")
    uids = [int(u) for u in data[0].split()]
    assert len(uids) == N and uids == sorted(uids) and len(set(uids)) == N
    # a message found by content: subjects are numbered by send order
    typ, data = m.search(None, "SUBJECT", '"big 09999"')
    [num] = data[0].split()
    typ, data = m.fetch(num, "(BODY.PEEK[TEXT])")
    assert data[0][1] == b"message number 09999\r\n"
    typ, data = m.fetch(str(N), "(RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK" and b"Subject: big " in data[0][1]
    m.logout()


def test_curl_reads_the_last_message(big):
    m = login(big)
    m.select("INBOX", readonly=True)
    typ, data = m.uid("SEARCH", "ALL")
    last = int(data[0].split()[-1])
    typ, data = m.uid("FETCH", str(last), "(BODY.PEEK[])")
    body = data[0][1]
    m.logout()
    p = subprocess.run(["curl", "-sS", "--max-time", "60", "--user", "%s:%s" % ALICE,
                        "imap://127.0.0.1:%d/INBOX;UID=%d" % (big.ports["imap"], last)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=90)
    assert p.returncode == 0, p.stderr
    assert p.stdout == body
    p = subprocess.run(["curl", "-sS", "--max-time", "60", "--user", "%s:%s" % ALICE,
                        "imap://127.0.0.1:%d/INBOX" % big.ports["imap"], "-X", "EXAMINE INBOX"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=90)
    assert p.returncode == 0, p.stderr
    assert b"* %d EXISTS" % N in p.stdout


def test_store_and_expunge_a_range_seen_by_another_session(big):
    a, b = login(big), login(big)
    a.select("INBOX")
    b.select("INBOX")
    typ, _ = a.store("1:1000", "+FLAGS.SILENT", "(\\Deleted)")
    assert typ == "OK"
    typ, data = a.expunge()
    assert typ == "OK" and len(data) == 1000
    typ, data = a.select("INBOX")
    assert int(data[0]) == N - 1000
    typ, _ = b.noop()
    assert typ == "OK"
    expunges = [r for r in b.untagged_responses.get("EXPUNGE", [])]
    assert len(expunges) == 1000
    typ, data = b.search(None, "ALL")
    assert len(data[0].split()) == N - 1000
    a.logout()
    b.logout()
