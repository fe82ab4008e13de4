"""Staged messages (docs/ARCHITECTURE.md, "Life of a message" steps 5-6;
src/store/store_stage.c): a small local message is committed as a blob in
index.db's message_blobs with its row, and the store's writer thread turns
it into data_dir/<file> once new mail pauses for ~100 ms, then drops the
blob.  These tests check, from outside, that

- a staged message reads the same through IMAP, POP3 and `postel mailbox
  fetch` before its file exists as after;
- every staged message becomes exactly one file with the same bytes, and
  no blob, no temporary file and no file without a row is left behind;
- a kill -9 before any file is written loses nothing that got its 250, and
  the next start writes the files;
- IMAP COPY (hard links) and EXPUNGE right after delivery, while the
  message is still a blob, and while the writer is at work, do the right
  thing.

test_torn_file_beside_its_blob_is_rewritten covers a state the writer no
longer produces (it syncs every file of a pass before it renames any into
place) but that a file system may still leave: a short file at a staged
message's name.  The writer must rewrite it from the blob.

index.db is only ever read here: read-only while the server runs, and
through a copy after a kill -9 (a read-write open would recover the WAL).

To make "before its file exists" deterministic rather than a race against
the writer's 100 ms pause, a HoldWriter thread keeps mail flowing (to
another account) while a test reads a fresh message, and the test checks
that the message really was still a blob at that point.
"""
import imaplib
import os
import poplib
import re
import shutil
import sqlite3
import threading
import time

import pytest

import harness
from harness import make_message

ALICE = ("alice@example.test", "alice-Secret-1")
BOB = "bob@example.test"
ROLES = ("smtp", "imap", "pop3")
SETTLE_TIMEOUT = 10.0
TMP_NAME_RE = re.compile(r"\.t")
ID_RE = re.compile(r"^[0-9a-f]{16}$")


@pytest.fixture
def srv(make_server):
    return make_server({"auth": {"plaintext_loopback": "yes"}, "log_level": "info"},
                       roles=ROLES)


# ---------------------------------------------------------------- helpers

def body_for(tok):
    # a recognisable end to catch truncation, and a leading dot for POP3
    return ("payload of %s\r\n.a line with a leading dot\r\n%s\r\nEND-%s\r\n"
            % (tok, "0123456789abcdef" * 40, tok))


def deliver(smtp, tok, rcpt=ALICE[0]):
    """One message over an open smtplib connection; asserts the 250."""
    smtp.ehlo_or_helo_if_needed()
    smtp.mail("sender@example.org")
    code, resp = smtp.rcpt(rcpt)
    assert code == 250, "RCPT %s: %d %r" % (rcpt, code, resp)
    code, resp = smtp.data(make_message(tok, to=rcpt, body=body_for(tok)))
    assert code == 250, "DATA %s: %d %r" % (tok, code, resp)


def index_path(srv):
    return os.path.join(srv.data_dir, "index.db")


def query(srv, sql, args=(), db=None):
    """Rows of a query on index.db, opened read-only (never writes, never
    checkpoints), or on db (a path) when given."""
    path = db or index_path(srv)
    uri = "file:%s?mode=ro" % path if db is None else path
    conn = sqlite3.connect(uri, uri=db is None, timeout=5)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def snapshot_index(srv):
    """A copy of index.db (with its WAL) taken while the server is down, to
    inspect without recovering the real one; returns its path."""
    snap = os.path.join(srv.dir, "snapshot-%d" % len(os.listdir(srv.dir)))
    os.makedirs(snap)
    for suffix in ("", "-wal"):
        if os.path.exists(index_path(srv) + suffix):
            shutil.copy(index_path(srv) + suffix, os.path.join(snap, "index.db" + suffix))
    return os.path.join(snap, "index.db")


def account_id(srv, address, db=None):
    rows = query(srv, "SELECT id FROM accounts WHERE address = ?", (address,), db)
    assert rows, "no account %s in index.db" % address
    return rows[0][0]


def message_rows(srv, address, db=None):
    """[(file, mailbox name, uid)] of every message row of an account."""
    return query(srv,
                 "SELECT m.file, b.name, m.uid FROM messages m"
                 " JOIN mailboxes b ON b.id = m.mailbox_id"
                 " WHERE b.account_id = (SELECT id FROM accounts WHERE address = ?)"
                 " ORDER BY b.name, m.uid", (address,), db)


def blob_count(srv, file=None, db=None):
    if file is None:
        return query(srv, "SELECT count(*) FROM message_blobs", (), db)[0][0]
    return query(srv, "SELECT count(*) FROM message_blobs WHERE file = ?", (file,), db)[0][0]


def mail_dir(srv, address, db=None):
    return os.path.join(srv.data_dir, "mail", str(account_id(srv, address, db)))


def dir_entries(path):
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def file_exists(srv, rel):
    return os.path.exists(os.path.join(srv.data_dir, rel))


def read_file(srv, rel):
    with open(os.path.join(srv.data_dir, rel), "rb") as f:
        return f.read()


def settle_state(srv, address):
    """(blobs left anywhere, message files of the account, names in its
    mail dir)."""
    rows = message_rows(srv, address)
    return (blob_count(srv), sorted(os.path.basename(r[0]) for r in rows),
            dir_entries(mail_dir(srv, address)))


def wait_settled(srv, addresses=(ALICE[0],), timeout=SETTLE_TIMEOUT):
    """Polls until message_blobs is empty and each account's mail dir
    holds exactly its rows' files (no more, no less); returns the rows of
    addresses[0].  Fails with the last state seen after timeout."""
    end = time.time() + timeout
    while True:
        states = {a: settle_state(srv, a) for a in addresses}
        if all(blobs == 0 and files == names for blobs, files, names in states.values()):
            return message_rows(srv, addresses[0])
        if time.time() > end:
            report = ["%d blobs left in message_blobs" % blob_count(srv)]
            for a, (_, files, names) in states.items():
                report.append("%s: rows without a file: %r; files without a row: %r"
                              % (a, sorted(set(files) - set(names))[:10],
                                 sorted(set(names) - set(files))[:10]))
            raise AssertionError("staged messages not written out within %.0fs:\n%s" % (
                timeout, "\n".join(report)))
        time.sleep(0.05)


class HoldWriter:
    """Keeps the stage writer from starting a pass: new (staged) mail to
    bob every ~10 ms (plus its commit), well inside the writer's 100 ms
    pause.  Use as a context manager; errors in the thread fail the test at
    exit."""

    def __init__(self, srv, interval=0.01):
        self.srv = srv
        self.interval = interval
        self.stop = threading.Event()
        self.started = threading.Event()
        self.errors = []
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            with self.srv.smtp() as s:
                s.ehlo("keeper.example.org")
                while not self.stop.is_set():
                    deliver(s, harness.token("keep"), rcpt=BOB)
                    self.sent += 1
                    self.started.set()
                    self.stop.wait(self.interval)
        except Exception as e:      # noqa: BLE001 - reported in __exit__
            self.errors.append(repr(e))
        finally:
            self.started.set()

    def __enter__(self):
        self.thread.start()
        assert self.started.wait(10), "keeper sent nothing in 10 s"
        assert not self.errors, self.errors
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(15)
        assert not self.thread.is_alive(), "keeper thread hangs"
        if exc[0] is None:
            assert not self.errors, "keeper: %r" % self.errors


def imap_login(srv):
    m = imaplib.IMAP4("127.0.0.1", srv.ports["imap"], timeout=10)
    m.login(*ALICE)
    return m


def ok(resp):
    typ, data = resp
    assert typ == "OK", data
    return data


def imap_fetch(m, uid):
    """BODY.PEEK[] of one UID in the selected mailbox (None: no such UID)."""
    data = ok(m.uid("FETCH", str(uid), "(BODY.PEEK[])"))
    lits = [d[1] for d in data if isinstance(d, tuple)]
    assert len(lits) <= 1, data
    return lits[0] if lits else None


def imap_uid_of(m, tok):
    ok(m.noop())    # new mail enters a selected mailbox's view at a command boundary
    data = ok(m.uid("SEARCH", None, "HEADER", "Message-ID", tok))
    uids = data[0].split()
    assert len(uids) == 1, "UID SEARCH for %s: %r" % (tok, data)
    return int(uids[0])


def imap_bytes_of_rows(srv, rows):
    """{file: BODY.PEEK[] bytes} for message rows [(file, mailbox, uid)]."""
    out = {}
    m = imap_login(srv)
    try:
        for mailbox in sorted({r[1] for r in rows}):
            ok(m.select('"%s"' % mailbox, readonly=True))
            for file, mb, uid in rows:
                if mb == mailbox:
                    body = imap_fetch(m, uid)
                    assert body is not None, "IMAP: no UID %d in %s" % (uid, mailbox)
                    out[file] = body
    finally:
        m.logout()
    return out


def files_matching_imap(srv, rows):
    """[(file, mailbox, bytes, tok)] for message rows [(file, mailbox, uid)],
    each file asserted equal to IMAP's BODY.PEEK[] of its row and whole."""
    by_imap = imap_bytes_of_rows(srv, rows)
    out = []
    for file, mailbox, uid in rows:
        data = read_file(srv, file)
        assert data == by_imap[file], "%s differs from IMAP FETCH of %s UID %d" % (
            file, mailbox, uid)
        tok = re.search(rb"Subject: test (\S+)\r\n", data).group(1).decode()
        check_message(data, tok)
        out.append((file, mailbox, data, tok))
    return out


def check_message(msg, tok):
    assert msg is not None, "message %s not found" % tok
    assert ("Subject: test %s\r\n" % tok).encode() in msg, msg[:400]
    assert msg.endswith(body_for(tok).encode()), "message %s is not whole: %r" % (tok, msg[-200:])


def row_file(srv, mailbox, uid):
    """The file of alice's message row mailbox/uid."""
    files = [r[0] for r in message_rows(srv, ALICE[0]) if r[1] == mailbox and r[2] == uid]
    assert len(files) == 1, "rows for %s UID %d: %r" % (mailbox, uid, files)
    return files[0]


# ---------------------------------------------------------------- tests

def test_staged_messages_become_files(srv):
    """30 messages: the newest reads whole through IMAP while still a blob;
    then each row gets exactly one file, the blobs go, and each file holds
    what IMAP FETCH returns."""
    toks = ["stg-%d-%s" % (i, harness.token()) for i in range(30)]
    with HoldWriter(srv):
        with srv.smtp() as s:
            for t in toks:
                deliver(s, t)
        # right away, while the writer is held off: the newest message is
        # still a blob, and IMAP reads it whole from there
        m = imap_login(srv)
        ok(m.select("INBOX", readonly=True))
        early_uid = imap_uid_of(m, toks[-1])
        early_file = row_file(srv, "INBOX", early_uid)
        assert blob_count(srv, early_file) == 1, "message %s was not staged (no blob)" % early_file
        early = imap_fetch(m, early_uid)
        assert not file_exists(srv, early_file), \
            "file %s written while new mail kept coming (writer not held off?)" % early_file
        m.logout()
        check_message(early, toks[-1])

    rows = wait_settled(srv, (ALICE[0], BOB))
    assert len(rows) == len(toks), "%d message rows for %d messages" % (len(rows), len(toks))
    for file, _, _ in rows:
        assert file.startswith("mail/%d/" % account_id(srv, ALICE[0])), file
        assert ID_RE.match(os.path.basename(file)), file
    files = files_matching_imap(srv, rows)
    assert {tok for _, _, _, tok in files} == set(toks)
    # the blob IMAP read before is what became the file
    assert [data for file, _, data, _ in files if file == early_file] == [early]


def test_kill_before_files_written(srv):
    """kill -9 right after the last 250, before the writer's pause: every
    acknowledged message is a blob at least, reads whole once after the
    restart (CLI, IMAP), and the restarted server writes all the files."""
    toks = ["kill-%d-%s" % (i, harness.token()) for i in range(20)]
    acked = []
    with srv.smtp() as s:
        for t in toks:
            deliver(s, t)
            acked.append(t)
        srv.kill9()     # right after the last 250, inside the writer's pause
    assert acked == toks

    # what the kill left, from a copy (a read-write open would recover the WAL)
    snap_db = snapshot_index(srv)
    rows = message_rows(srv, ALICE[0], db=snap_db)
    assert len(rows) == len(toks), "%d rows after the kill for %d acknowledged" % (
        len(rows), len(toks))
    staged = [r[0] for r in rows if not file_exists(srv, r[0])]
    assert staged, "every file was written before the kill: nothing staged to recover"
    for f in staged:
        assert blob_count(srv, f, db=snap_db) == 1, "%s has neither file nor blob after kill -9" % f
    print("kill -9 left %d of %d messages as blobs only" % (len(staged), len(rows)))

    srv.start()
    # every acknowledged message is there, once, whole (CLI and IMAP)
    stored = srv.messages(ALICE[0])
    assert len(stored) == len(toks), "%d stored after restart for %d acknowledged" % (
        len(stored), len(toks))
    by_tok = {}
    for msg in stored:
        tok = re.search(rb"Subject: test (\S+)\r\n", msg).group(1).decode()
        check_message(msg, tok)
        assert tok not in by_tok, "%s stored twice" % tok
        by_tok[tok] = msg
    assert set(by_tok) == set(acked)

    rows = wait_settled(srv)
    assert len(rows) == len(toks)
    by_imap = imap_bytes_of_rows(srv, rows)
    for file, _, uid in rows:
        on_disk = read_file(srv, file)
        tok = re.search(rb"Subject: test (\S+)\r\n", on_disk).group(1).decode()
        assert on_disk == by_imap[file] == by_tok[tok], \
            "%s (UID %d) differs between file, IMAP and CLI" % (file, uid)

    # the recovered server still stages and writes out
    t = "kill-after-%s" % harness.token()
    with srv.smtp() as s:
        deliver(s, t)
    rows = wait_settled(srv)
    assert len(rows) == len(toks) + 1
    check_message(srv.find(ALICE[0], t)[0], t)


def test_copy_and_expunge_right_after_delivery(srv):
    """UID COPY of a message still staged writes its file and hard-links
    the copy; STORE \\Deleted + EXPUNGE of another still staged leaves,
    once the writer is done, neither file nor blob nor temporary file."""
    keep_tok = "cp-%s" % harness.token()
    gone_tok = "ex-%s" % harness.token()
    with HoldWriter(srv):
        with srv.smtp() as s:
            deliver(s, keep_tok)
        m = imap_login(srv)
        ok(m.select("INBOX"))
        uid = imap_uid_of(m, keep_tok)
        src_file = row_file(srv, "INBOX", uid)
        assert blob_count(srv, src_file) == 1 and not file_exists(srv, src_file), \
            "%s is not staged before COPY" % src_file
        ok(m.uid("COPY", str(uid), "Archive"))
        _, codes = m.response("COPYUID")   # from the tagged OK [COPYUID v src dst]
        assert codes and codes[-1], "no COPYUID in the reply to UID COPY"
        copy_uid = int(codes[-1].split()[-1])
        # COPY wrote the source's file first and linked the copy to it
        copy_file = row_file(srv, "Archive", copy_uid)
        assert copy_file != src_file
        assert file_exists(srv, src_file) and file_exists(srv, copy_file)
        st_src = os.stat(os.path.join(srv.data_dir, src_file))
        st_copy = os.stat(os.path.join(srv.data_dir, copy_file))
        assert (st_src.st_dev, st_src.st_ino) == (st_copy.st_dev, st_copy.st_ino), \
            "the copy is not a hard link of the source"
        inbox_bytes = imap_fetch(m, uid)
        check_message(inbox_bytes, keep_tok)

        with srv.smtp() as s:
            deliver(s, gone_tok)
        gone_uid = imap_uid_of(m, gone_tok)
        gone_file = row_file(srv, "INBOX", gone_uid)
        assert blob_count(srv, gone_file) == 1 and not file_exists(srv, gone_file), \
            "%s is not staged before EXPUNGE" % gone_file
        ok(m.uid("STORE", str(gone_uid), "+FLAGS.SILENT", r"(\Deleted)"))
        ok(m.expunge())
        assert imap_fetch(m, gone_uid) is None

        ok(m.select("Archive", readonly=True))
        archived = imap_fetch(m, copy_uid)
        m.logout()
    assert archived == inbox_bytes, "the Archive copy differs from the INBOX original"

    rows = wait_settled(srv, (ALICE[0], BOB))
    files = {r[0] for r in rows}
    assert files == {src_file, copy_file}, rows
    assert not file_exists(srv, gone_file), "file of the expunged message written"
    assert blob_count(srv, gone_file) == 0
    names = dir_entries(mail_dir(srv, ALICE[0]))
    assert not [n for n in names if TMP_NAME_RE.search(n)], "temporary files left: %r" % names
    assert all(ID_RE.match(n) for n in names), names
    assert read_file(srv, src_file) == read_file(srv, copy_file) == inbox_bytes
    by_imap = imap_bytes_of_rows(srv, rows)
    assert by_imap[src_file] == by_imap[copy_file] == inbox_bytes
    assert not srv.find(ALICE[0], gone_tok)


def test_pop3_reads_staged_message(srv):
    """POP3 RETR of a message still staged: the same bytes as IMAP FETCH
    (dot-stuffing undone), as many as LIST says, and as its file later."""
    tok = "pop-%s" % harness.token()
    with HoldWriter(srv):
        with srv.smtp() as s:
            deliver(s, tok)
        m = imap_login(srv)
        ok(m.select("INBOX", readonly=True))
        uid = imap_uid_of(m, tok)
        file = row_file(srv, "INBOX", uid)
        assert blob_count(srv, file) == 1, "%s was not staged" % file

        p = poplib.POP3("127.0.0.1", srv.ports["pop3"], timeout=10)
        try:
            p.user(ALICE[0])
            p.pass_(ALICE[1])
            count, _ = p.stat()
            assert count == 1, count
            size = int(p.list(1).split()[2])
            resp, lines, octets = p.retr(1)
            assert resp.startswith(b"+OK"), resp
        finally:
            p.quit()
        assert not file_exists(srv, file), "file written while new mail kept coming"
        imap_bytes = imap_fetch(m, uid)
        m.logout()
    popped = b"\r\n".join(lines) + b"\r\n"
    check_message(popped, tok)
    assert popped == imap_bytes, "POP3 RETR and IMAP FETCH differ"
    assert len(popped) == size, "RETR gave %d octets, LIST says %d" % (len(popped), size)

    rows = wait_settled(srv, (ALICE[0], BOB))
    assert [r[0] for r in rows] == [file]
    assert read_file(srv, file) == popped


def test_copy_and_expunge_racing_the_writer(srv):
    """COPY and EXPUNGE of fresh messages, paced across the moment the
    writer starts its pass (~100 ms after the last delivery) and while it
    runs: whatever the interleaving, every copy reads as its original, no
    expunged message leaves a file or a blob, and no stray file is left."""
    toks = ["race-%d-%s" % (i, harness.token()) for i in range(40)]
    with srv.smtp() as s:
        for t in toks:
            deliver(s, t)
    m = imap_login(srv)
    ok(m.select("INBOX"))
    ok(m.noop())
    uids = {t: imap_uid_of(m, t) for t in toks}
    copied = []
    t0 = time.time()
    for i in range(0, len(toks), 2):
        ok(m.uid("COPY", str(uids[toks[i]]), "Archive"))
        copied.append(toks[i])
        ok(m.uid("STORE", str(uids[toks[i + 1]]), "+FLAGS.SILENT", r"(\Deleted)"))
        ok(m.expunge())
        time.sleep(0.01)    # pacing only: spread the commands over ~0.3 s
    print("COPY/EXPUNGE pairs over %.0f ms" % ((time.time() - t0) * 1000))
    m.logout()

    rows = wait_settled(srv)
    assert len(rows) == 2 * len(copied), rows
    names = dir_entries(mail_dir(srv, ALICE[0]))
    assert all(ID_RE.match(n) for n in names), "stray files: %r" % names
    by_tok = {}
    for _, mailbox, data, tok in files_matching_imap(srv, rows):
        by_tok.setdefault(tok, {})[mailbox] = data
    assert set(by_tok) == set(copied), "left: %r" % sorted(set(by_tok) ^ set(copied))
    for tok, boxes in by_tok.items():
        assert set(boxes) == {"INBOX", "Archive"} and boxes["INBOX"] == boxes["Archive"], tok


def test_torn_file_beside_its_blob_is_rewritten(srv):
    """A short or empty file at a staged message's name beside its blob
    (what a power cut could leave if a name became durable before its
    data; the writer syncs every file before renaming it into place, so it
    never creates this state itself).  Planted after a kill -9 that left
    the messages staged: the writer must trust the blob, the durable copy
    of an acknowledged message, and rewrite the file from it."""
    toks = ["pc-%d-%s" % (i, harness.token()) for i in range(3)]
    with srv.smtp() as s:
        for t in toks:
            deliver(s, t)
        srv.kill9()
    rows = message_rows(srv, ALICE[0], db=snapshot_index(srv))
    assert len(rows) == 3
    staged = [r for r in rows if not file_exists(srv, r[0])]
    assert len(staged) == 3, "files written before the kill: %r" % rows
    with open(os.path.join(srv.data_dir, staged[0][0]), "wb"):
        pass                                    # renamed, no data block yet
    with open(os.path.join(srv.data_dir, staged[1][0]), "wb") as f:
        f.write(b"Return-Path: <")              # partly written back
    srv.start()
    rows = wait_settled(srv)
    for t in toks:
        check_message((srv.find(ALICE[0], t) or [None])[0], t)
    for file, _, _ in rows:
        data = read_file(srv, file)
        tok = re.search(rb"Subject: test (\S+)\r\n", data)
        assert tok, "%s after restart: %r" % (file, data[:100])
        check_message(data, tok.group(1).decode())


def test_expunge_during_a_writer_pass(srv):
    """EXPUNGE of staged messages while the writer is in the middle of a
    pass (its batch read, files being written): a file written for a row
    that is gone must not stay behind, and nothing else may go."""
    n, expunge_from = 250, 120
    toks = ["mid-%03d-%s" % (i, harness.token()) for i in range(n)]
    filler = "x" * 78 + "\r\n"
    with srv.smtp() as s:
        s.ehlo_or_helo_if_needed()
        for t in toks:
            s.mail("sender@example.org")
            assert s.rcpt(ALICE[0])[0] == 250
            code, resp = s.data(make_message(t, body=filler * 250 + body_for(t)))
            assert code == 250, (code, resp)
    m = imap_login(srv)
    ok(m.select("INBOX"))
    rows = message_rows(srv, ALICE[0])
    assert len(rows) == n
    first = os.path.join(srv.data_dir, rows[0][0])
    end = time.time() + SETTLE_TIMEOUT
    while not os.path.exists(first):
        assert time.time() < end, "the writer wrote nothing within %.0fs" % SETTLE_TIMEOUT
        time.sleep(0.0005)
    gone = {r[0] for r in rows if r[2] > expunge_from}
    unwritten = sum(1 for f in gone if not file_exists(srv, f))
    ok(m.uid("STORE", "%d:*" % (expunge_from + 1), "+FLAGS.SILENT", r"(\Deleted)"))
    ok(m.expunge())
    m.logout()
    print("%d of %d messages had no file yet just before EXPUNGE" % (unwritten, len(gone)))
    rows = wait_settled(srv)
    assert len(rows) == expunge_from
    names = dir_entries(mail_dir(srv, ALICE[0]))
    assert all(ID_RE.match(n) for n in names), "stray files: %r" % names
    assert sorted(r[2] for r in rows) == list(range(1, expunge_from + 1))
    for file, _, uid in rows:
        data = read_file(srv, file)
        check_message(data, toks[uid - 1])     # one connection: UIDs in sending order
        assert len(data) > 20000, len(data)
