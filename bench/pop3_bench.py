#!/usr/bin/python3
"""POP3 retrieval benchmark: postel against a private Dovecot pop3 instance
(Debian's dovecot-pop3d), both measured in the same run with the same
client and the same messages.

Load: BENCH_POP3_MESSAGES (10000) messages of BENCH_POP3_SIZE (20480)
bytes spread over BENCH_POP3_CLIENTS (10) accounts.  The client is
bench/pop3_load.c, compiled here with cc: one process, one epoll loop,
one connection per account.  It logs every connection in first (USER/PASS,
plaintext on loopback; not timed: both servers check the same yescrypt
hash, ~0.1 s of CPU each by design), then RETRs every message of every
maildrop at once with pipelined commands (RFC 2449 PIPELINING, both
servers advertise it; BENCH_POP3_DEPTH outstanding per connection,
default 16), checks every response (+OK, the terminating ".", the body
un-stuffed exactly as many octets as announced) and QUITs without
deleting.  A C client keeps the load generator's share of the 2 cores
small, so the figure is the server's.

Figures per round: messages retrieved per second of wall time (first RETR
to last QUIT answered), and the server's CPU seconds (user + system) per
1000 messages: postel's from /proc/PID/stat, Dovecot's summed over its
whole process tree (live processes plus the reaped per-session pop3
processes, counted in their parents' cutime/cstime).  The best of
BENCH_POP3_ROUNDS (5) rounds per server is reported, rounds alternating
between the servers.

Setup (not timed): postel gets its messages by SMTP (parallel smtplib
sessions, one per account) into data_dir on the repository's disk;
Dovecot's are written as Maildir files directly (LF line ends and the
",S=size,W=vsize" names Dovecot's own LDA writes, with the same header
prefix postel adds: Return-Path, Delivered-To, Received), under its own
config with passwd-file auth on a loopback port.  Each maildrop is
opened once before timing (Dovecot builds its index then; postel has
nothing to build).  Dovecot runs with pop3_no_flag_updates = yes, so
neither server changes flags on RETR.

    POSTEL_BIN    binary under test (default ./postel)
    BENCH_ONLY    "postel" or "dovecot" to run one side only
    BENCH_TIMEOUT seconds a round may take (default 120)
    BENCH_KEEP    keep the work directory (logs, data) for a look afterwards
"""
import base64
import multiprocessing
import os
import pwd
import random
import resource
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from benchlib import free_port, stop_process, tail_file, tree_cpu, wait_port

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POSTEL_BIN = os.environ.get("POSTEL_BIN") or os.path.join(REPO, "postel")
N_MSG = int(os.environ.get("BENCH_POP3_MESSAGES", "10000"))
SIZE = int(os.environ.get("BENCH_POP3_SIZE", "20480"))
CLIENTS = int(os.environ.get("BENCH_POP3_CLIENTS", "10"))
DEPTH = int(os.environ.get("BENCH_POP3_DEPTH", "16"))
ROUNDS = int(os.environ.get("BENCH_POP3_ROUNDS", "5"))
ONLY = os.environ.get("BENCH_ONLY", "")
LIMIT = float(os.environ.get("BENCH_TIMEOUT", "120"))
DOVECOT = "/usr/sbin/dovecot"
DOMAIN = "example.test"
PASSWORD = "bench-Password-1"


def password_hash():
    """One yescrypt hash (libxcrypt's default method) of PASSWORD, given to
    both servers: postel stores crypt hashes as they are, Dovecot reads
    it as {CRYPT}."""
    import ctypes
    lib = ctypes.CDLL("libcrypt.so.1")
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    setting = lib.crypt_gensalt(b"$y$", 0, None, 0)
    h = lib.crypt(PASSWORD.encode(), setting)
    if not h or not h.startswith(b"$y$"):
        raise RuntimeError("libcrypt cannot make a yescrypt hash")
    return h.decode()


HASH = password_hash()


def log(msg):
    print(msg, flush=True)


def account(i):
    return "bench%d@%s" % (i, DOMAIN)


# ------------------------------------------------------------------ messages

def message(acct, n, rng):
    """A SIZE-byte message (CRLF lines, a few starting with '.') for acct."""
    head = ("From: <sender@example.org>\r\nTo: <%s>\r\nSubject: bench message %d\r\n"
            "Message-ID: <%d.%s@bench.example.org>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
            % (acct, n, n, acct.split("@")[0]))
    lines = []
    size = len(head)
    i = 0
    while size < SIZE - 80:
        text = base64.b64encode(rng.randbytes(57)).decode()
        if i % 50 == 7:
            text = "." + text[1:]          # exercises dot-stuffing
        lines.append(text)
        size += len(text) + 2
        i += 1
    pad = SIZE - size - 2
    lines.append("x" * max(pad, 1))
    return (head + "\r\n".join(lines) + "\r\n").encode()


def per_account():
    """How many messages each account gets (N_MSG spread evenly)."""
    base, extra = divmod(N_MSG, CLIENTS)
    return [base + (1 if i < extra else 0) for i in range(CLIENTS)]


# ------------------------------------------------------------------ client

def build_client(work):
    """Compiles bench/pop3_load.c (the C load client) into the work dir."""
    exe = os.path.join(work, "pop3_load")
    subprocess.run(["cc", "-std=c11", "-O2", "-o", exe, os.path.join(REPO, "bench", "pop3_load.c")],
                   check=True, timeout=120)
    return exe


def run_round(client, srv, counts):
    """One run of the C client (all accounts at once); returns (messages,
    octets, seconds from the first RETR to the last QUIT answered, server
    CPU seconds from then until the sessions are gone; logins excluded)."""
    users = [account(i) for i in range(CLIENTS)]
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen([client, str(srv.port), PASSWORD, str(DEPTH), str(int(LIMIT))] + users,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        ready = proc.stdout.readline()     # every connection logged in
        before = tree_cpu(srv.proc.pid)
        if ready.strip() == "ready":
            proc.stdin.write("go\n")
            proc.stdin.flush()
        result, err = proc.communicate(timeout=LIMIT * 2 + 60)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeError(err.strip() or "pop3_load exited %d" % proc.returncode)
    ru2 = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = ru2.ru_utime + ru2.ru_stime - ru.ru_utime - ru.ru_stime
    # let the per-session processes (Dovecot) end and be reaped
    time.sleep(0.3)
    cpu = tree_cpu(srv.proc.pid) - before
    vals = dict(kv.split("=") for kv in result.split())
    msgs = int(vals["messages"])
    if msgs != sum(counts):
        raise RuntimeError("retrieved %d messages, expected %d" % (msgs, sum(counts)))
    return msgs, int(vals["octets"]), float(vals["seconds"]), cpu, client_cpu


def warm(port):
    for i in range(CLIENTS):
        s = socket.create_connection(("127.0.0.1", port), 30)
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"USER %s\r\nPASS %s\r\nUIDL\r\n" % (account(i).encode(), PASSWORD.encode()))
        f.readline()
        r = f.readline()
        if not r.startswith(b"+OK"):
            raise RuntimeError("warm-up login %s: %r" % (account(i), r))
        while f.readline() not in (b".\r\n", b""):
            pass
        s.sendall(b"QUIT\r\n")
        f.readline()
        s.close()


# ------------------------------------------------------------------ postel

class Postel:
    name = "postel"

    def __init__(self, work):
        self.dir = os.path.join(work, "postel")
        os.makedirs(self.dir)
        self.conf = os.path.join(self.dir, "postel.conf")
        self.smtp_port = free_port()
        self.port = free_port()
        self.proc = None
        with open(self.conf, "w") as f:
            f.write("hostname = bench.example.test\ndata_dir = %s/data\ndomains = %s\n"
                    "log_level = warn\n[listen]\nsmtp = 127.0.0.1:%d\npop3 = 127.0.0.1:%d\n"
                    "[limits]\nconnections_per_ip = 200\nmessage_size = 50M\n"
                    "[auth]\nplaintext_loopback = yes\n"
                    % (self.dir, DOMAIN, self.smtp_port, self.port))

    def cli(self, *args, stdin=None):
        return subprocess.run([POSTEL_BIN, "-c", self.conf] + list(args), input=stdin,
                              capture_output=True, timeout=60, check=True)

    def start(self, counts):
        for i in range(CLIENTS):
            self.cli("user", "add", account(i), stdin=(HASH + "\n").encode())
        self.log = open(os.path.join(self.dir, "postel.log"), "ab")
        self.proc = subprocess.Popen([POSTEL_BIN, "-c", self.conf, "serve"], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log)
        if not wait_port(self.smtp_port):
            raise RuntimeError("postel did not listen on SMTP")
        if not wait_port(self.port, 2):
            raise RuntimeError("postel does not listen on POP3 (is the pop3 role built in? "
                               "POSTEL_BIN=%s)" % POSTEL_BIN)
        t0 = time.time()
        with multiprocessing.Pool(CLIENTS) as pool:
            pool.map(fill_postel, [(self.smtp_port, i, counts[i]) for i in range(CLIENTS)])
        log("postel   setup: %d messages delivered by SMTP in %.1fs" % (sum(counts), time.time() - t0))
        out = self.cli("mailbox", "status", account(0)).stdout.decode()
        inbox = [l for l in out.splitlines() if l.startswith("INBOX")]
        if not inbox or "messages=%d " % counts[0] not in inbox[0] + " ":
            raise RuntimeError("postel INBOX of %s: %r" % (account(0), inbox))

    def stop(self):
        stop_process(self.proc, 10)


def fill_postel(args):
    port, i, n = args
    rng = random.Random(i)
    acct = account(i)
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
        for k in range(n):
            s.sendmail("sender@example.org", [acct], message(acct, k, rng))


# ------------------------------------------------------------------ Dovecot

class Dovecot:
    name = "dovecot"

    def __init__(self, work):
        self.dir = os.path.join(work, "dovecot")
        os.makedirs(self.dir)
        self.port = free_port()
        self.proc = None
        mail = pwd.getpwnam("nobody")
        self.uid, self.gid = mail.pw_uid, mail.pw_gid
        for sub in ("run", "state", "home"):
            os.makedirs(os.path.join(self.dir, sub))
        os.chmod(self.dir, 0o755)
        self.conf = os.path.join(self.dir, "dovecot.conf")
        with open(os.path.join(self.dir, "passwd"), "w") as f:
            for i in range(CLIENTS):
                f.write("%s:{CRYPT}%s::::::\n" % (account(i), HASH))
        with open(self.conf, "w") as f:
            f.write("""# private benchmark instance (bench/pop3_bench.py)
base_dir = {d}/run
state_dir = {d}/state
instance_name = postel-bench-{port}
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
protocols = pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = 1
mail_location = maildir:~/Maildir
pop3_no_flag_updates = yes
pop3_uidl_format = %08Xu%08Xv
mail_max_userip_connections = 100
passdb {{
  driver = passwd-file
  args = scheme=CRYPT username_format=%u {d}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={d}/home/%u
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
""".format(d=self.dir, port=self.port, uid=self.uid, gid=self.gid))

    def fill(self, counts):
        """Maildir files as Dovecot's LDA writes them: LF line ends, the
        sizes in the name (S= file size, W= size with CRLF)."""
        t0 = time.time()
        for i in range(CLIENTS):
            acct = account(i)
            md = os.path.join(self.dir, "home", acct, "Maildir")
            for sub in ("cur", "new", "tmp"):
                os.makedirs(os.path.join(md, sub))
            rng = random.Random(i)
            now = int(time.time())
            for k in range(counts[i]):
                crlf = (b"Return-Path: <sender@example.org>\r\nDelivered-To: %s\r\n"
                        b"Received: from [127.0.0.1] ([127.0.0.1])\r\n\tby bench.example.test "
                        b"(dovecot) with ESMTP id 0123456789.%d\r\n\tfor <%s>;\r\n"
                        b"\tMon, 1 Jan 2024 00:00:00 +0000\r\n" % (acct.encode(), k, acct.encode())
                        ) + message(acct, k, rng)
                lf = crlf.replace(b"\r\n", b"\n")
                name = "%d.M%dP%d.bench,S=%d,W=%d:2," % (now, k, os.getpid(), len(lf), len(crlf))
                with open(os.path.join(md, "cur", name), "wb") as f:
                    f.write(lf)
        for root, dirs, files in os.walk(os.path.join(self.dir, "home")):
            for n in dirs + files:
                os.chown(os.path.join(root, n), self.uid, self.gid)
        os.chown(os.path.join(self.dir, "home"), self.uid, self.gid)
        log("dovecot  setup: %d Maildir files written in %.1fs" % (sum(counts), time.time() - t0))

    def start(self, counts):
        self.fill(counts)
        self.log = open(os.path.join(self.dir, "stdout.log"), "ab")
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log)
        if not wait_port(self.port):
            raise RuntimeError("dovecot did not listen on %d: %s" % (self.port, self.tail()))

    def tail(self):
        return tail_file(os.path.join(self.dir, "dovecot.log"))

    def stop(self):
        stop_process(self.proc, 10)


# ------------------------------------------------------------------ main

def main():
    counts = per_account()
    work = tempfile.mkdtemp(prefix=".pop3.", dir=os.path.join(REPO, "bench"))
    os.chmod(work, 0o755)
    servers = []
    if ONLY != "dovecot":
        servers.append(Postel(work))
    if ONLY != "postel":
        if not os.access(DOVECOT, os.X_OK):
            log("pop3 bench: %s missing (make deps installs dovecot-pop3d)" % DOVECOT)
            return 1
        servers.append(Dovecot(work))
    log("POP3 benchmark: %d messages of %d bytes on %d accounts, %d clients, pipelined RETR "
        "(depth %d), best of %d rounds; %d cores" % (N_MSG, SIZE, CLIENTS, CLIENTS, DEPTH,
                                                   ROUNDS, os.cpu_count() or 0))
    best = {}
    cpu = {}
    status = 0
    try:
        client = build_client(work)
        live = []
        for srv in servers:
            try:
                srv.start(counts)
                warm(srv.port)
                live.append(srv)
            except Exception as e:   # report, and measure the other side
                log("pop3 bench: %s setup failed: %s" % (srv.name, e))
                status = 1
        for r in range(ROUNDS):
            for srv in live:
                try:
                    msgs, nbytes, secs, used, ccpu = run_round(client, srv, counts)
                except Exception as e:
                    log("pop3 bench: %s round %d failed: %s" % (srv.name, r + 1, e))
                    status = 1
                    continue
                rate = msgs / secs
                per_k = used * 1000.0 / msgs
                log("%-8s round %d: %d messages (%.0f MB) in %.3fs = %.0f msg/s, "
                    "server CPU %.2fs = %.3fs per 1000 messages (client CPU %.2fs)" % (
                        srv.name, r + 1, msgs, nbytes / 1e6, secs, rate, used, per_k, ccpu))
                best[srv.name] = max(best.get(srv.name, 0), rate)
                cpu[srv.name] = min(cpu.get(srv.name, per_k), per_k)
    finally:
        for srv in servers:
            srv.stop()
        if os.environ.get("BENCH_KEEP"):
            log("pop3 bench: work directory kept: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    log("")
    a, b = best.get("postel"), best.get("dovecot")
    ratio = "%.2fx" % (a / b) if a and b else "n/a"
    ca, cb = cpu.get("postel"), cpu.get("dovecot")
    cratio = "%.2fx" % (cb / ca) if ca and cb else "n/a"
    log("pop3 retr %d clients: postel %s msg/s, dovecot %s msg/s, ratio %s; server CPU per "
        "1000 messages: postel %s s, dovecot %s s (dovecot/postel %s)" % (
            CLIENTS, "%.0f" % a if a else "n/a", "%.0f" % b if b else "n/a", ratio,
            "%.3f" % ca if ca is not None else "n/a", "%.3f" % cb if cb is not None else "n/a",
            cratio))
    return status


if __name__ == "__main__":
    sys.exit(main())
