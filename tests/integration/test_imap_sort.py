"""SORT, THREAD and ESORT (RFC 5256, RFC 5267) through Python's imaplib
against a real postel.  A fresh mailbox gets six messages by APPEND with
chosen INTERNALDATEs; the first UID is expunged beforehand so UIDs differ
from sequence numbers.  Expected orders follow from the message data by
the rules of RFC 5256 (worked out in the comments)."""
import imaplib
import socket

import pytest

import harness

ALICE = ("alice@example.test", "alice-Secret-1")
ROLES = ("smtp", "imap")
DAY = 86400
BASE = 1706745600  # 2024-02-01 00:00:00 UTC

# (headers, internaldate); every message also gets a body of its own length.
MSGS = [
    # 1: base "beta", a reply to 3 (<b1@t>)
    ("Subject: Re: beta\r\nFrom: zed@x.test\r\nTo: amy@x.test\r\n"
     "Date: Mon, 01 Jan 2024 10:00:00 +0000\r\nMessage-ID: <b2@t>\r\nReferences: <b1@t>\r\n",
     BASE + 4 * DAY, 300),
    # 2: "alpha"
    ("Subject: alpha\r\nFrom: bob@x.test\r\nTo: cat@x.test\r\nCc: dan@x.test\r\n"
     "Date: Wed, 03 Jan 2024 10:00:00 +0000\r\nMessage-ID: <a1@t>\r\n",
     BASE, 100),
    # 3: "beta", sent 2024-01-01 04:00 UTC (zone -0500)
    ("Subject: beta\r\nFrom: Amy <amy@x.test>\r\nTo: bob@x.test\r\n"
     "Date: Sun, 31 Dec 2023 23:00:00 -0500\r\nMessage-ID: <b1@t>\r\n",
     BASE + 2 * DAY, 50),
    # 4: RFC 2047 subject "[list] Alpha" -> "Alpha"; no Date: INTERNALDATE
    #    (2023-06-01) stands in; In-Reply-To the alpha message
    ("Subject: =?UTF-8?Q?=5Blist=5D_Alpha?=\r\nFrom: =?utf-8?q?C?= <Carl@x.test>\r\n"
     "To: me@x.test\r\nMessage-ID: <a2@t>\r\nIn-Reply-To: <a1@t>\r\n",
     1685577600, 700),
    # 5: "Fwd: gamma" -> "gamma"; no From, no To; refers to a message not here
    ("Subject: Fwd: gamma\r\nDate: Tue, 02 Jan 2024 00:00:00 +0000\r\n"
     "Message-ID: <g1@t>\r\nReferences: <nothere@t>\r\n",
     BASE + DAY, 2000),
    # 6: "Re: beta", a reply to 1 and 3
    ("Subject: Re: beta\r\nFrom: bob@x.test\r\nCc: aaron@x.test\r\n"
     "Date: Fri, 05 Jan 2024 00:00:00 +0000\r\nMessage-ID: <b3@t>\r\n"
     "References: <b1@t> <b2@t>\r\n",
     BASE + 3 * DAY, 10),
]


def ok(resp):
    typ, data = resp
    assert typ == "OK", data
    return data


@pytest.fixture(scope="module")
def srv(module_server):
    return module_server({"auth": {"plaintext_loopback": "yes"}}, roles=ROLES)


@pytest.fixture(scope="module")
def box(srv):
    m = imaplib.IMAP4("127.0.0.1", srv.ports["imap"])
    m.login(*ALICE)
    ok(m.create("SortBox"))
    ok(m.append("SortBox", None, None, b"Subject: gone\r\n\r\nx\r\n"))
    ok(m.select("SortBox"))
    ok(m.store("1", "+FLAGS", "\\Deleted"))
    ok(m.expunge())
    sizes = []
    for hdr, when, n in MSGS:
        raw = (hdr + "\r\n" + "x" * n + "\r\n").encode()
        sizes.append(len(raw))
        ok(m.append("SortBox", None, imaplib.Time2Internaldate(when), raw))
    m.logout()
    return sizes


@pytest.fixture
def m(srv, box):
    c = imaplib.IMAP4("127.0.0.1", srv.ports["imap"])
    c.login(*ALICE)
    ok(c.select("SortBox"))
    yield c
    c.logout()


def nums(data):
    return [int(x) for x in data[0].split()] if data and data[0] else []


def test_capabilities(srv):
    c = imaplib.IMAP4("127.0.0.1", srv.ports["imap"])
    for cap in ("SORT", "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES", "ESORT"):
        assert cap in c.capabilities, c.capabilities
    c.logout()


@pytest.mark.parametrize("crit,want", [
    # base subjects: 1 beta, 2 alpha, 3 beta, 4 Alpha, 5 gamma, 6 beta;
    # alpha == Alpha (i;ascii-casemap), ties in mailbox order
    ("(SUBJECT)", [2, 4, 1, 3, 6, 5]),
    ("(REVERSE SUBJECT)", [5, 1, 3, 6, 2, 4]),
    # sent dates (UTC): 4 none -> 2023-06-01, 3 01-01 04:00, 1 01-01 10:00,
    # 5 01-02, 2 01-03, 6 01-05
    ("(DATE)", [4, 3, 1, 5, 2, 6]),
    ("(REVERSE DATE)", [6, 2, 5, 1, 3, 4]),
    # INTERNALDATE: 4 2023, 2 +0, 5 +1d, 3 +2d, 6 +3d, 1 +4d
    ("(ARRIVAL)", [4, 2, 5, 3, 6, 1]),
    # first From mailbox: 5 "", amy, bob (2, 6), Carl, zed
    ("(FROM)", [5, 3, 2, 6, 4, 1]),
    # To: 5 and 6 "", amy, bob, cat, me
    ("(TO)", [5, 6, 1, 3, 2, 4]),
    # Cc: "" (1 3 4 5), aaron, dan
    ("(CC)", [1, 3, 4, 5, 6, 2]),
    # subject, then newest first within a subject
    ("(SUBJECT REVERSE DATE)", [2, 4, 6, 1, 3, 5]),
])
def test_sort_keys(m, crit, want):
    assert nums(ok(m.sort(crit, "UTF-8", "ALL"))) == want


def test_sort_size(m, box):
    want = sorted(range(1, 7), key=lambda i: (box[i - 1], i))
    assert nums(ok(m.sort("(SIZE)", "UTF-8", "ALL"))) == want
    want.reverse()
    assert nums(ok(m.sort("(REVERSE SIZE)", "US-ASCII", "ALL"))) == want


def test_sort_with_search_and_uid(m):
    # only the beta messages (SUBJECT search matches "Re: beta" too)
    assert nums(ok(m.sort("(DATE)", "UTF-8", "SUBJECT", "beta"))) == [3, 1, 6]
    # UIDs are sequence numbers + 1 (UID 1 was expunged)
    typ, data = m.uid("SORT", "(DATE)", "UTF-8", "ALL")
    assert typ == "OK"
    assert nums(data) == [5, 4, 2, 6, 3, 7]
    typ, data = m.uid("SORT", "(ARRIVAL)", "UTF-8", "UID", "2:4")
    assert nums(data) == [3, 4, 2]
    assert nums(ok(m.sort("(SUBJECT)", "UTF-8", "NOT", "ALL"))) == []


def test_thread_orderedsubject(m):
    # alpha: 4 (2023) then 2; beta: 3, 1, 6; gamma: 5; threads by first date
    data = ok(m.thread("ORDEREDSUBJECT", "UTF-8", "ALL"))
    assert data == [b"(4 2)(3 (1)(6))(5)"]
    typ, data = m.uid("THREAD", "ORDEREDSUBJECT", "UTF-8", "ALL")
    assert data == [b"(5 3)(4 (2)(7))(6)"]


def test_thread_references(m):
    # 3 <- 1 (References b1) <- 6 (References b1 b2); 2 <- 4 (In-Reply-To);
    # 5's parent is missing: the dummy with one child is replaced by it;
    # roots by sent date: 3 (01-01), 5 (01-02), 2 (01-03)
    data = ok(m.thread("REFERENCES", "UTF-8", "ALL"))
    assert data == [b"(3 1 6)(5)(2 4)"]
    typ, data = m.uid("THREAD", "REFERENCES", "UTF-8", "ALL")
    assert data == [b"(4 2 7)(6)(3 5)"]
    # a subset: without 1, 6 still hangs under 3 through References
    data = ok(m.thread("REFERENCES", "UTF-8", "NOT", "1"))
    assert data == [b"(3 6)(5)(2 4)"]


def test_errors_keep_session(m):
    typ, data = m.sort("(DATE)", "KOI8-R", "ALL")
    assert typ == "NO" and b"BADCHARSET" in data[0], data
    with pytest.raises(imaplib.IMAP4.error) as e:
        m.sort("(BOGUS)", "UTF-8", "ALL")
    assert "sort key" in str(e.value)
    with pytest.raises(imaplib.IMAP4.error):
        m.sort("(DATE REVERSE)", "UTF-8", "ALL")
    with pytest.raises(imaplib.IMAP4.error):
        m.sort("()", "UTF-8", "ALL")
    with pytest.raises(imaplib.IMAP4.error) as e:
        m.thread("BOGUS", "UTF-8", "ALL")
    assert "threading algorithm" in str(e.value)
    with pytest.raises(imaplib.IMAP4.error):
        m.thread("REFERENCES", "UTF-8")
    assert nums(ok(m.sort("(ARRIVAL)", "UTF-8", "ALL"))) == [4, 2, 5, 3, 6, 1]


def test_sort_needs_selected(srv):
    c = imaplib.IMAP4("127.0.0.1", srv.ports["imap"])
    c.login(*ALICE)
    with pytest.raises(imaplib.IMAP4.error):
        c.sort("(DATE)", "UTF-8", "ALL")
    c.logout()


def raw(sock, f, line):
    sock.sendall(line + b"\r\n")
    out = []
    tag = line.split(b" ", 1)[0]
    while True:
        r = f.readline()
        assert r, out
        out.append(r)
        if r.startswith(tag + b" "):
            return out


def test_esort_return_options(srv, box):
    s = socket.create_connection(("127.0.0.1", srv.ports["imap"]), timeout=10)
    f = s.makefile("rb")
    f.readline()
    raw(s, f, b"l LOGIN %s %s" % (ALICE[0].encode(), ALICE[1].encode()))
    raw(s, f, b"s SELECT SortBox")
    out = raw(s, f, b"e1 SORT RETURN (MIN MAX COUNT ALL) (DATE) UTF-8 ALL")
    assert out[-1].startswith(b"e1 OK"), out
    assert out[0] == b'* ESEARCH (TAG "e1") MIN 4 MAX 6 COUNT 6 ALL 4,3,1,5,2,6\r\n', out
    out = raw(s, f, b"e2 UID SORT RETURN (COUNT) (SUBJECT) UTF-8 ALL")
    assert out[0] == b'* ESEARCH (TAG "e2") UID COUNT 6\r\n', out
    out = raw(s, f, b"e3 SORT RETURN () (ARRIVAL) UTF-8 ALL")
    assert out[0] == b'* ESEARCH (TAG "e3") ALL 4,2,5,3,6,1\r\n', out
    # consecutive ascending runs are compressed
    out = raw(s, f, b"e4 UID SORT RETURN (ALL) (CC) UTF-8 ALL")
    assert out[0] == b'* ESEARCH (TAG "e4") UID ALL 2,4:7,3\r\n', out
    out = raw(s, f, b"e5 SORT RETURN (BOGUS) (DATE) UTF-8 ALL")
    assert out[-1].startswith(b"e5 BAD"), out
    out = raw(s, f, b"e6 LOGOUT")
    s.close()
