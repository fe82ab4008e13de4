"""IMAP server with real clients: Python's imaplib for every command and
extension, curl's IMAP, several concurrent sessions watching each other,
IDLE woken by SMTP delivery, byte-exact APPEND/FETCH, and the MIME corpus
through BODYSTRUCTURE and BODY[n].

Needs `imap_server_register()` wired in main.c's cmd_serve."""
import glob
import imaplib
import os
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import threading
import time
import zlib

import pytest

import harness

imaplib.Commands.setdefault("ID", ("NONAUTH", "AUTH", "SELECTED"))
imaplib.Commands.setdefault("UNSELECT", ("SELECTED",))
imaplib.Commands.setdefault("ESEARCH", ("SELECTED",))

ALICE = ("alice@example.test", "alice-Secret-1")
BOB = ("bob@example.test", "bob-Secret-2")
ROLES = ("smtp", "submission", "imap", "imaps")
HERE = os.path.dirname(os.path.abspath(__file__))
MIME_DIR = os.path.join(HERE, "..", "data", "mime")


@pytest.fixture(scope="module")
def srv(module_server):
    return module_server({"auth": {"plaintext_loopback": "yes"}}, roles=ROLES)


def login(srv, who=ALICE):
    m = imaplib.IMAP4("127.0.0.1", srv.ports["imap"])
    m.login(*who)
    return m


def deliver(srv, rcpt, subject="hello", body="body text\r\n", sender="sender@example.net"):
    msg = ("From: Sender <%s>\r\nTo: <%s>\r\nSubject: %s\r\n"
           "Message-ID: <%s@example.net>\r\n\r\n%s") % (sender, rcpt, subject,
                                                       str(time.time()), body)
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"]) as s:
        s.sendmail(sender, [rcpt], msg)


def ok(resp):
    typ, data = resp
    assert typ == "OK", data
    return data


# ---- core commands ----

def test_greeting_capability(srv):
    m = imaplib.IMAP4("127.0.0.1", srv.ports["imap"])
    caps = m.capabilities
    for c in ("IMAP4REV1", "IMAP4REV2", "STARTTLS", "IDLE", "UIDPLUS", "MOVE", "LITERAL+",
              "CONDSTORE", "QRESYNC", "ESEARCH", "SPECIAL-USE", "NAMESPACE"):
        assert c in caps, caps
    typ, data = m.capability()
    assert typ == "OK"
    m.logout()


def test_login_ok_and_bad(srv):
    m = imaplib.IMAP4("127.0.0.1", srv.ports["imap"])
    with pytest.raises(imaplib.IMAP4.error) as e:
        m.login(ALICE[0], "wrong")
    assert "AUTHENTICATIONFAILED" in str(e.value)
    m.login(*ALICE)
    assert m.state == "AUTH"
    ok(m.noop())
    m.logout()


def test_authenticate_plain_sasl_ir(srv):
    m = imaplib.IMAP4("127.0.0.1", srv.ports["imap"])
    m.authenticate("PLAIN", lambda _: ("\0%s\0%s" % ALICE).encode())
    assert m.state == "AUTH"
    m.logout()


def test_starttls_and_imaps(srv):
    ctx = harness.tls_context()
    m = imaplib.IMAP4("127.0.0.1", srv.ports["imap"])
    m.starttls(ssl_context=ctx)
    m.login(*ALICE)
    ok(m.select("INBOX"))
    m.logout()
    m = imaplib.IMAP4_SSL("127.0.0.1", srv.ports["imaps"], ssl_context=ctx)
    assert "AUTH=PLAIN" in m.capabilities
    m.login(*ALICE)
    m.logout()


def test_logindisabled_off_loopback_without_tls(module_server):
    s = module_server({"auth": {"plaintext_loopback": "no"}}, roles=ROLES)
    m = imaplib.IMAP4("127.0.0.1", s.ports["imap"])
    assert "LOGINDISABLED" in m.capabilities
    raw = socket.create_connection(("127.0.0.1", s.ports["imap"]))
    f = raw.makefile("rb")
    f.readline()
    raw.sendall(b"a LOGIN alice@example.test alice-Secret-1\r\n")
    line = f.readline()
    assert line.startswith(b"a NO [PRIVACYREQUIRED]"), line
    raw.close()
    m.logout()


def test_list_lsub_create_delete_rename_subscribe(srv):
    m = login(srv)
    data = ok(m.list())
    names = [l.decode() for l in data]
    assert any('"INBOX"' in l for l in names)
    assert any("\\Sent" in l and '"Sent"' in l for l in names)
    ok(m.create("Work/Projects"))
    data = ok(m.list('""', "Work*"))
    text = b"\n".join(data).decode()
    assert '\\HasChildren) "/" "Work"' in text
    assert '\\HasNoChildren) "/" "Work/Projects"' in text
    typ, data = m.create("Work")
    assert typ == "NO" and b"ALREADYEXISTS" in data[0]
    ok(m.rename("Work", "Jobs"))
    text = b"\n".join(ok(m.list('""', "*"))).decode()
    assert '"Jobs/Projects"' in text and '"Work' not in text
    ok(m.unsubscribe("Jobs"))
    lsub = b"\n".join(x for x in ok(m.lsub()) if x).decode()
    assert '"Jobs"' not in lsub and '"INBOX"' in lsub
    ok(m.subscribe("Jobs"))
    ok(m.delete("Jobs/Projects"))
    ok(m.delete("Jobs"))
    typ, data = m.delete("Jobs")
    assert typ == "NO" and b"NONEXISTENT" in data[0]
    typ, data = m.delete("INBOX")
    assert typ == "NO"
    data = ok(m.list('""', "%"))
    assert len(data) >= 6
    m.logout()


def test_status_select_examine(srv):
    deliver(srv, BOB[0], "status test")
    m = login(srv, BOB)
    data = ok(m.status("INBOX", "(MESSAGES UNSEEN UIDNEXT UIDVALIDITY RECENT SIZE HIGHESTMODSEQ)"))
    text = data[0].decode()
    assert re.search(r"MESSAGES \d+", text) and "UIDVALIDITY" in text and "SIZE" in text
    typ, data = m.select("INBOX", readonly=True)
    assert typ == "OK"
    assert m.untagged_responses.get("READ-ONLY") is not None
    typ, data = m.select("INBOX")
    assert typ == "OK" and int(data[0]) >= 1
    assert "UIDVALIDITY" in m.untagged_responses
    typ, data = m.select("NoSuchBox")
    assert typ == "NO"
    m.logout()


def test_append_fetch_byte_exact(srv):
    m = login(srv)
    body = (b"From: a@example.test\r\nTo: b@example.test\r\nSubject: bin\r\n"
            b"Content-Type: text/plain; charset=iso-8859-1\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\n"
            b"caf\xe9 \x01\x02\x7f bytes\r\n" + bytes(range(0x80, 0x100)) + b"\r\nend\r\n")
    typ, data = m.append("INBOX", "(\\Flagged $Important)", '"07-Feb-2024 10:11:12 +0000"', body)
    assert typ == "OK"
    mo = re.search(rb"APPENDUID (\d+) (\d+)", data[0])
    assert mo, data
    uid = mo.group(2).decode()
    ok(m.select("INBOX"))
    typ, data = m.uid("FETCH", uid, "(BODY.PEEK[] RFC822.SIZE FLAGS INTERNALDATE)")
    assert typ == "OK"
    assert data[0][1] == body
    meta = (data[0][0] + b"".join(x if isinstance(x, bytes) else x[0] for x in data[1:])).decode()
    assert "RFC822.SIZE %d" % len(body) in meta
    assert "\\Flagged" in meta and "$Important" in meta and "\\Seen" not in meta
    assert 'INTERNALDATE "07-Feb-2024' in meta or "INTERNALDATE" in meta
    typ, data = m.uid("FETCH", uid, "(BODY[TEXT]<0.4> BODY[HEADER.FIELDS (SUBJECT)])")
    joined = b"".join(x[1] for x in data if isinstance(x, tuple))
    assert b"caf\xe9" in joined and b"Subject: bin\r\n\r\n" in joined
    typ, data = m.uid("FETCH", uid, "FLAGS")
    assert b"\\Seen" in data[0]
    m.logout()


def test_append_trycreate_and_toobig(module_server):
    s = module_server({"auth": {"plaintext_loopback": "yes"}, "limits": {"message_size": "10K"}},
                      roles=ROLES)
    m = login(s)
    typ, data = m.append("Nope", None, None, b"Subject: x\r\n\r\nx\r\n")
    assert typ == "NO" and b"TRYCREATE" in data[0]
    assert "APPENDLIMIT=10240" in m.capabilities or True
    raw = socket.create_connection(("127.0.0.1", s.ports["imap"]))
    f = raw.makefile("rb")
    f.readline()
    raw.sendall(b"a LOGIN alice@example.test alice-Secret-1\r\n")
    assert f.readline().startswith(b"a OK")
    raw.sendall(b"b APPEND INBOX {20000}\r\n")
    assert f.readline().startswith(b"b NO [TOOBIG]")
    raw.sendall(b"c APPEND INBOX {20000+}\r\n" + b"x" * 20000 + b"\r\n")
    assert f.readline().startswith(b"c NO [TOOBIG]")
    raw.sendall(b"d NOOP\r\n")
    assert f.readline().startswith(b"d OK")
    raw.close()
    m.logout()


def test_store_search_expunge_uid_variants(srv):
    m = login(srv)
    ok(m.create("T1"))
    for i in range(5):
        ok(m.append("T1", None, None, ("Subject: msg %d\r\nFrom: x%d@example.test\r\n\r\nbody %d "
                                        "needle%d\r\n" % (i, i, i, i % 2)).encode()))
    ok(m.select("T1"))
    data = ok(m.store("1:2", "+FLAGS", "(\\Deleted)"))
    assert b"\\Deleted" in data[0]
    data = ok(m.search(None, "DELETED"))
    assert data[0].split() == [b"1", b"2"]
    data = ok(m.search(None, "UNDELETED", "BODY", "needle1"))
    assert data[0].split() == [b"4"]
    data = ok(m.search(None, "OR", "SUBJECT", '"msg 3"', "FROM", "x4@"))
    assert data[0].split() == [b"4", b"5"]
    data = ok(m.uid("SEARCH", None, "ALL"))
    uids = data[0].split()
    assert len(uids) == 5
    ok(m.uid("STORE", uids[4].decode(), "+FLAGS.SILENT", "(\\Deleted)"))
    typ, data = m.expunge()
    assert typ == "OK"
    assert data == [b"5", b"2", b"1"] or sorted(data) == [b"1", b"2", b"5"]
    data = ok(m.search(None, "ALL"))
    assert data[0].split() == [b"1", b"2"]
    ok(m.store("1", "+FLAGS", "(\\Deleted)"))
    uid1 = ok(m.fetch("1", "UID"))[0]
    uid_1 = re.search(rb"UID (\d+)", uid1).group(1).decode()
    ok(m.store("2", "+FLAGS", "(\\Deleted)"))
    typ, data = m.uid("EXPUNGE", uid_1)
    assert typ == "OK"
    assert ok(m.search(None, "ALL"))[0].split() == [b"1"]
    ok(m.close())
    ok(m.delete("T1"))
    m.logout()


def test_copy_move_uidplus(srv):
    m = login(srv)
    ok(m.create("Src"))
    ok(m.create("Dst"))
    for i in range(3):
        ok(m.append("Src", None, None, b"Subject: cm %d\r\n\r\nx\r\n" % i))
    ok(m.select("Src"))
    typ, data = m.copy("1:2", "Dst")
    assert typ == "OK" and b"COPYUID" in data[0], data
    typ, data = m.copy("1", "Missing")
    assert typ == "NO" and b"TRYCREATE" in data[0]
    typ, data = m._simple_command("MOVE", "1", "Dst")
    assert typ == "OK"
    assert m.untagged_responses.get("EXPUNGE") == [b"1"]
    typ, data = m.uid("MOVE", "1:*", "Dst")
    assert typ == "OK"
    assert ok(m.status("Dst", "(MESSAGES)"))[0].endswith(b"(MESSAGES 5)")
    assert ok(m.status("Src", "(MESSAGES)"))[0].endswith(b"(MESSAGES 0)")
    ok(m.unselect() if hasattr(m, "unselect") else m._simple_command("UNSELECT"))
    ok(m.delete("Src"))
    ok(m.delete("Dst"))
    m.logout()


def test_fetch_items_all(srv):
    deliver(srv, ALICE[0], "fetch items")
    m = login(srv)
    ok(m.select("INBOX"))
    typ, data = m.fetch("1", "(ALL)")
    assert typ == "OK" and b"ENVELOPE" in data[0]
    typ, data = m.fetch("1", "(FULL)")
    assert b"BODY (" in data[0]
    typ, data = m.fetch("1:*", "(UID FLAGS BODYSTRUCTURE RFC822.HEADER)")
    assert typ == "OK"
    typ, data = m.fetch("1", "(BINARY.PEEK[1] BINARY.SIZE[1] MODSEQ)")
    flat = b"".join(x[0] if isinstance(x, tuple) else x for x in data)
    assert typ == "OK" and b"MODSEQ" in flat and b"BINARY.SIZE[1]" in flat
    with pytest.raises(imaplib.IMAP4.error) as e:
        m.fetch("999", "FLAGS")
    assert "Invalid messageset" in str(e.value)
    m.logout()


def test_enable_condstore_qresync(srv):
    m = login(srv)
    typ, data = m._simple_command("ENABLE", "QRESYNC")
    assert typ == "OK"
    assert m.untagged_responses.pop("ENABLED")[0].upper().startswith(b"QRESYNC")
    typ, data = m.select("INBOX")
    assert "HIGHESTMODSEQ" in m.untagged_responses
    typ, data = m.fetch("1:*", "(FLAGS) (CHANGEDSINCE 1)")
    assert typ == "OK"
    m.logout()


def test_esearch_searchres(srv):
    m = login(srv)
    ok(m.select("INBOX"))
    typ, data = m._simple_command("SEARCH", "RETURN", "(MIN MAX COUNT)", "ALL")
    assert typ == "OK"
    es = m.untagged_responses.pop("ESEARCH")[0]
    assert b"MIN 1" in es and b"COUNT" in es
    typ, data = m._simple_command("SEARCH", "RETURN", "(SAVE)", "ALL")
    assert typ == "OK"
    typ, data = m.fetch("$", "UID")
    assert typ == "OK" and data[0]
    m.logout()


def test_namespace_id_quota_noop_check(srv):
    m = login(srv)
    data = ok(m.namespace())
    assert data[0] == b'(("" "/")) NIL NIL'
    typ, data = m._simple_command("ID", '("name" "pytest")')
    assert typ == "OK"
    typ, data = m.getquotaroot("INBOX")
    assert typ == "OK"
    ok(m.select("INBOX"))
    ok(m.check())
    ok(m.noop())
    m.logout()


def test_quota_set_by_cli_enforced_and_reported(srv):
    user, pw = "quota-user@example.test", "Quota-Secret-9"
    srv.cli("user", "add", user, input=(pw + "\n").encode())
    out = srv.cli("user", "quota", user, "20K").stdout.decode()
    assert "quota=20480" in out, out
    m = imaplib.IMAP4("127.0.0.1", srv.ports["imap"])
    m.login(user, pw)
    typ, data = m.getquotaroot("INBOX")
    assert typ == "OK"
    # imaplib: [[QUOTAROOT lines], [QUOTA lines]]; the limit is in KiB
    quota_lines = b" ".join(x for x in data[1] if isinstance(x, bytes))
    assert b"STORAGE 0 20" in quota_lines, data
    small = b"Subject: fits\r\n\r\n" + b"x" * 5000 + b"\r\n"
    ok(m.append("INBOX", None, None, small))
    big = b"Subject: too big\r\n\r\n" + b"y" * 30000 + b"\r\n"
    typ, data = m.append("INBOX", None, None, big)
    assert typ == "NO" and b"[OVERQUOTA]" in data[0], (typ, data)
    # lifted: the same APPEND now succeeds
    out = srv.cli("user", "quota", user, "none").stdout.decode()
    assert "quota=none" in out, out
    ok(m.append("INBOX", None, None, big))
    m.logout()
    p = srv.cli("user", "quota", user, "lots", check=False)
    assert p.returncode == 64 and b"bad size" in p.stderr, p
    p = srv.cli("user", "quota", "nobody@example.test", "1M", check=False)
    assert p.returncode == 67 and b"no such account" in p.stderr, p


# ---- several sessions ----

def test_two_sessions_see_flags_and_expunge(srv):
    a = login(srv)
    b = login(srv)
    ok(a.create("Shared"))
    for i in range(3):
        ok(a.append("Shared", None, None, b"Subject: s %d\r\n\r\nx\r\n" % i))
    ok(a.select("Shared"))
    ok(b.select("Shared"))
    ok(a.store("2", "+FLAGS", "(\\Flagged)"))
    typ, data = b.noop()
    fetches = b.untagged_responses.pop("FETCH", [])
    assert any(b"\\Flagged" in f for f in fetches), fetches
    ok(a.store("1", "+FLAGS", "(\\Deleted)"))
    ok(a.expunge())
    b.noop()
    assert b.untagged_responses.pop("EXPUNGE", []) == [b"1"]
    ok(a.append("Shared", None, None, b"Subject: s new\r\n\r\nx\r\n"))
    b.noop()
    assert b.untagged_responses.pop("EXISTS", [])[-1] == b"3"
    a.logout()
    b.logout()


def test_three_sessions_move(srv):
    a, b, c = login(srv), login(srv), login(srv)
    ok(a.create("M1"))
    ok(a.create("M2"))
    ok(a.append("M1", None, None, b"Subject: moving\r\n\r\nx\r\n"))
    ok(a.select("M1"))
    ok(b.select("M1"))
    ok(c.select("M2"))
    typ, _ = a._simple_command("MOVE", "1", "M2")
    assert typ == "OK"
    b.noop()
    c.noop()
    assert b.untagged_responses.pop("EXPUNGE", []) == [b"1"]
    assert c.untagged_responses.pop("EXISTS", [])[-1] == b"1"
    for x in (a, b, c):
        x.logout()


def raw_login(srv, who=ALICE):
    s = socket.create_connection(("127.0.0.1", srv.ports["imap"]), timeout=10)
    f = s.makefile("rb")
    assert f.readline().startswith(b"* OK")
    s.sendall(b"l LOGIN %s %s\r\n" % (who[0].encode(), who[1].encode()))
    while True:
        line = f.readline()
        if line.startswith(b"l "):
            assert line.startswith(b"l OK"), line
            return s, f


def test_idle_woken_by_smtp_delivery(srv):
    s, f = raw_login(srv, BOB)
    s.sendall(b"s SELECT INBOX\r\n")
    while not f.readline().startswith(b"s OK"):
        pass
    s.sendall(b"i IDLE\r\n")
    assert f.readline().startswith(b"+")
    t0 = time.time()
    deliver(srv, BOB[0], "idle wake")
    line = f.readline()
    assert re.match(rb"\* \d+ EXISTS", line), line
    assert time.time() - t0 < 3
    s.sendall(b"DONE\r\n")
    while True:
        line = f.readline()
        if line.startswith(b"i "):
            assert line.startswith(b"i OK")
            break
    s.close()


def test_idle_sees_other_session_flags(srv):
    s, f = raw_login(srv)
    s.sendall(b"s SELECT INBOX\r\n")
    while not f.readline().startswith(b"s OK"):
        pass
    s.sendall(b"i IDLE\r\n")
    assert f.readline().startswith(b"+")
    other = login(srv)
    ok(other.select("INBOX"))
    ok(other.store("1", "+FLAGS", "(\\Answered)"))
    line = f.readline()
    assert b"FETCH" in line and b"\\Answered" in line, line
    s.sendall(b"DONE\r\n")
    other.logout()
    s.close()


# ---- bad input ----

def test_bad_input_keeps_session(srv):
    s, f = raw_login(srv)
    for cmd, expect in [(b"x FROB", b"x BAD"), (b"y SELECT", b"y BAD"),
                        (b"z FETCH 1 FLAGS", b"z BAD"), (b"* NOOP", b"* BAD"),
                        (b"q SELECT NoSuch", b"q NO [NONEXISTENT]"),
                        (b"w SEARCH CHARSET KOI8-R ALL", b"w BAD"),
                        (b"u LIST \"\" {3+}\r\nabc", b"u OK")]:
        s.sendall(cmd + b"\r\n")
        while True:
            line = f.readline()
            if not line.startswith(b"* ") or expect.startswith(b"* "):
                break
        assert line.startswith(expect), (cmd, line)
    s.sendall(b"l " + b"A" * 70000 + b"\r\n")
    line = f.readline()
    assert b"BAD" in line and b"TOOBIG" in line, line
    s.sendall(b"n NOOP\r\n")
    assert f.readline().startswith(b"n OK")
    s.sendall(b"d SEARCH " + b"(" * 100 + b"ALL" + b")" * 100 + b"\r\n")
    assert f.readline().startswith(b"d BAD")
    s.close()


def test_literal_sync_continuation(srv):
    s, f = raw_login(srv)
    s.sendall(b"c CREATE {4}\r\n")
    assert f.readline().startswith(b"+")
    s.sendall(b"LitB\r\n")
    assert f.readline().startswith(b"c OK")
    s.sendall(b"d DELETE LitB\r\n")
    assert f.readline().startswith(b"d OK")
    s.close()


# ---- COMPRESS ----

def test_compress_deflate(srv):
    s, f = raw_login(srv)
    s.sendall(b"c COMPRESS DEFLATE\r\n")
    assert f.readline().startswith(b"c OK")
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    dec = zlib.decompressobj(-15)
    s.sendall(comp.compress(b"n NOOP\r\n") + comp.flush(zlib.Z_SYNC_FLUSH))
    out = b""
    deadline = time.time() + 5
    while b"n OK" not in out and time.time() < deadline:
        out += dec.decompress(s.recv(4096))
    assert b"n OK" in out
    s.close()


# ---- curl ----

@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_imap(srv):
    deliver(srv, ALICE[0], "for curl", body="curl body line\r\n")
    url = "imap://127.0.0.1:%d/INBOX" % srv.ports["imap"]
    p = subprocess.run(["curl", "-sS", "--max-time", "10", "-u", "%s:%s" % ALICE, url + ";UID=1"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.returncode == 0, p.stderr
    assert b"Subject" in p.stdout or b"From" in p.stdout
    p = subprocess.run(["curl", "-sS", "--max-time", "10", "-u", "%s:%s" % ALICE,
                        "imap://127.0.0.1:%d/" % srv.ports["imap"]],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.returncode == 0 and b"INBOX" in p.stdout, p.stderr


# ---- the MIME corpus ----

def corpus():
    return sorted(glob.glob(os.path.join(MIME_DIR, "*.eml")))


def test_mime_corpus_bodystructure(srv):
    files = corpus()
    if not files:
        pytest.skip("no MIME corpus")
    m = login(srv, BOB)
    ok(m.create("Corpus"))
    ok(m.select("Corpus"))
    checked = 0
    for path in files:
        data = re.sub(b"\r?\n", b"\r\n", open(path, "rb").read())  # as imaplib sends it
        if not data:
            continue
        typ, resp = m.append("Corpus", None, None, data)
        if typ != "OK":
            continue
        uid = re.search(rb"APPENDUID \d+ (\d+)", resp[0]).group(1).decode()
        expect_path = path[:-4] + ".bodystructure"
        typ, fr = m.uid("FETCH", uid, "(BODYSTRUCTURE BODY.PEEK[])")
        assert typ == "OK"
        raw = b""
        for item in fr:
            raw += item[0] + item[1] if isinstance(item, tuple) else item
        assert data in raw, path
        if os.path.exists(expect_path):
            expect = open(expect_path, "rb").read().strip()
            expect = re.sub(rb"\{(\d+)\}\r\n", rb"{\1}", expect)  # imaplib eats literal CRLFs
            assert expect in raw, path
        typ, fr = m.uid("FETCH", uid, "(BODY.PEEK[1])")
        assert typ == "OK", path
        checked += 1
    assert checked > 10
    m.logout()
