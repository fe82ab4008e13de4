#!/usr/bin/python3
"""IMAP benchmark: postel against a private Dovecot imap instance (Debian's
dovecot-imapd), same client, same messages, same password hash, in one run.

(a) memory per connection: BENCH_IMAP_CONNS (default 5000, fewer when the
    fd limit does not allow it; the figure used is printed) logged-in
    connections over implicit TLS, each in IDLE on INBOX.  The figure is
    the RSS (and PSS) of every server process summed, divided by the
    connection count; printed for postel, Dovecot without hibernation and
    Dovecot with imap_hibernate_timeout (idle imap processes hand their
    connection to the imap-hibernate process).  Dovecot's imap-login runs
    in its high-performance mode (service_count = 0), which is how large
    sites run it; without that it needs one more process per connection.
(b) mixed workload: BENCH_IMAP_CLIENTS (50) clients over BENCH_IMAP_ACCOUNTS
    (100) accounts, each client alternating between two sessions.  One loop
    is SELECT INBOX, FETCH 1:* FLAGS, FETCH n BODY[], SEARCH UNSEEN, STORE
    n +/-FLAGS (\\Flagged), APPEND (LITERAL+), UID STORE +FLAGS.SILENT
    (\\Deleted) and UID EXPUNGE of the appended message; loops and commands
    per second over BENCH_IMAP_SECONDS (20).
(c) the same with a new connection, LOGIN and LOGOUT in every loop.

The load generator is one Python process per client (blocking sockets, no
parsing beyond what the protocol needs); its CPU time is printed beside
the server's so a saturated client shows.  Both servers check the same
password hash, BENCH_IMAP_HASH: "sha512" (default: SHA512-CRYPT, 5000
rounds, ~2 ms) or "yescrypt" (~20-100 ms, postel's default for new
accounts; it then dominates (c) on both sides).  Accounts get
BENCH_IMAP_MESSAGES (50) messages each, appended through IMAP by the same
code for both servers.

    POSTEL_BIN    binary under test (default ./postel)
    BENCH_ONLY    "postel" or "dovecot" to run one side only
    BENCH_IMAP_PARTS  "a b c" (default all)
    BENCH_KEEP    keep the work directory (logs, configs) for inspection
"""
import ctypes
import multiprocessing
import os
import pwd
import random
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from benchlib import free_port, stop_process, tail_file, tree_cpu, tree_memory, wait_port

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POSTEL_BIN = os.environ.get("POSTEL_BIN") or os.path.join(REPO, "postel")
CONNS = int(os.environ.get("BENCH_IMAP_CONNS", "5000"))
CLIENTS = int(os.environ.get("BENCH_IMAP_CLIENTS", "50"))
ACCOUNTS = int(os.environ.get("BENCH_IMAP_ACCOUNTS", "100"))
MESSAGES = int(os.environ.get("BENCH_IMAP_MESSAGES", "50"))
SECONDS = float(os.environ.get("BENCH_IMAP_SECONDS", "20"))
HASH_KIND = os.environ.get("BENCH_IMAP_HASH", "sha512")
PARTS = os.environ.get("BENCH_IMAP_PARTS", "a b c").split()
ONLY = os.environ.get("BENCH_ONLY", "")
DOVECOT = "/usr/sbin/dovecot"
DOMAIN = "example.test"
PASSWORD = "bench-Password-1"
MSG_SIZE = 4096


def log(msg):
    print(msg, flush=True)


def make_hash():
    lib = ctypes.CDLL("libcrypt.so.1")
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    prefix = b"$y$" if HASH_KIND == "yescrypt" else b"$6$"
    h = lib.crypt(PASSWORD.encode(), lib.crypt_gensalt(prefix, 0, None, 0))
    if not h or not h.startswith(prefix):
        raise RuntimeError("libcrypt cannot make a %s hash" % HASH_KIND)
    return h.decode()


def account(i):
    return "imapbench%d@%s" % (i, DOMAIN)


def message(acct, k):
    rng = random.Random(hash((acct, k)) & 0xffffffff)
    head = ("From: Sender %d <sender%d@example.org>\r\nTo: <%s>\r\nSubject: bench message %d\r\n"
            "Message-ID: <%d.%s@bench.example.org>\r\nDate: Mon, 1 Jan 2024 00:%02d:00 +0000\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
            % (k % 7, k % 7, acct, k, k, acct.split("@")[0], k % 60))
    body = []
    size = len(head)
    while size < MSG_SIZE - 80:
        line = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(70))
        body.append(line)
        size += 72
    return (head + "\r\n".join(body) + "\r\n").encode()


# ------------------------------------------------------------------ process tree

# ------------------------------------------------------------------ IMAP client

class Conn:
    """A minimal blocking IMAP client: commands out, lines (and literals)
    in until the tagged reply."""

    def __init__(self, port, tls_ctx=None):
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls_ctx:
            s = tls_ctx.wrap_socket(s)
        self.s = s
        self.buf = b""
        self.n = 0
        line = self.line()
        if not line.startswith(b"* OK"):
            raise RuntimeError("greeting %r" % line)

    def line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i + 2], self.buf[i + 2:]
                return line
            data = self.s.recv(65536)
            if not data:
                raise RuntimeError("connection closed")
            self.buf += data

    def exactly(self, n):
        while len(self.buf) < n:
            data = self.s.recv(max(65536, n - len(self.buf)))
            if not data:
                raise RuntimeError("connection closed")
            self.buf += data
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def cmd(self, text, data=None):
        """Sends one command (data: a LITERAL+ literal appended); returns
        (untagged lines, tagged line)."""
        self.n += 1
        tag = b"t%d" % self.n
        if data is not None:
            self.s.sendall(tag + b" " + text + b" {%d+}\r\n" % len(data) + data + b"\r\n")
        else:
            self.s.sendall(tag + b" " + text + b"\r\n")
        lines = []
        while True:
            line = self.line()
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError("%s -> %r" % (text[:60], line))
                return lines, line
            if line.endswith(b"}\r\n") and b"{" in line:
                n = int(line[line.rindex(b"{") + 1:-3])
                line += self.exactly(n)
            lines.append(line)

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def login(port, acct, tls_ctx=None):
    c = Conn(port, tls_ctx)
    c.cmd(b"LOGIN %s %s" % (acct.encode(), PASSWORD.encode()))
    return c


def fill_worker(args):
    port, accts = args
    for a in accts:
        c = login(port, a)
        for k in range(MESSAGES):
            c.cmd(b"APPEND INBOX", message(a, k))
        c.cmd(b"LOGOUT")
        c.close()


def fill(port):
    t0 = time.time()
    groups = [[account(i) for i in range(ACCOUNTS) if i % 8 == g] for g in range(8)]
    with multiprocessing.Pool(8) as pool:
        pool.map(fill_worker, [(port, g) for g in groups])
    return time.time() - t0


# ---- (b) and (c): one loop of the mixed workload

def one_loop(c, rng, state):
    lines, _ = c.cmd(b"SELECT INBOX")
    exists = 0
    for l in lines:
        if l.endswith(b" EXISTS\r\n"):
            exists = int(l.split()[1])
    if exists == 0:
        raise RuntimeError("empty INBOX")
    c.cmd(b"FETCH 1:* (FLAGS)")
    # Another client of the same account may have expunged the message
    # picked (its own APPEND) since our SELECT; RFC 2180 4.1 lets the
    # server answer such a FETCH with no data.  NOOP brings the EXPUNGE
    # news; then pick again.
    for attempt in range(5):
        n = rng.randint(1, exists)
        lines, _ = c.cmd(b"FETCH %d (BODY[])" % n)
        if lines and b"BODY[]" in lines[0]:
            break
        lines, _ = c.cmd(b"NOOP")
        for l in lines:
            if l.endswith(b" EXPUNGE\r\n"):
                exists -= 1
            elif l.endswith(b" EXISTS\r\n"):
                exists = int(l.split()[1])
        if exists <= 0:
            raise RuntimeError("empty INBOX")
    else:
        raise RuntimeError("FETCH BODY[] gave %r" % lines[:1])
    c.cmd(b"SEARCH UNSEEN")
    state[0] = not state[0]
    c.cmd(b"STORE %d %sFLAGS (\\Flagged)" % (n, b"+" if state[0] else b"-"))
    _, tagged = c.cmd(b"APPEND INBOX", state[1])
    i = tagged.find(b"[APPENDUID ")
    if i < 0:
        raise RuntimeError("no APPENDUID: %r" % tagged)
    uid = tagged[i:].split()[2].rstrip(b"]")
    c.cmd(b"UID STORE %s +FLAGS.SILENT (\\Deleted)" % uid)
    c.cmd(b"UID EXPUNGE %s" % uid)
    return 8


def load_worker(idx, port, relogin, ready, go, stop, out):
    rng = random.Random(idx)
    accts = [account((2 * idx) % ACCOUNTS), account((2 * idx + 1) % ACCOUNTS)]
    sessions = [] if relogin else [login(port, a) for a in accts]
    states = [[False, message(a, 999)] for a in accts]
    ready.release()
    go.wait()
    loops = cmds = k = 0
    try:
        while not stop.is_set():
            j = k % 2
            k += 1
            if relogin:
                c = login(port, accts[j])
                cmds += 1 + one_loop(c, rng, states[j])
                c.cmd(b"LOGOUT")
                c.close()
                cmds += 1
            else:
                cmds += one_loop(sessions[j], rng, states[j])
            loops += 1
    except Exception as e:  # reported, not hidden: the run fails
        out.put((idx, -1, -1, repr(e)))
        return
    for c in sessions:
        c.cmd(b"LOGOUT")
        c.close()
    out.put((idx, loops, cmds, ""))


def run_load(srv, relogin):
    ready = multiprocessing.Semaphore(0)
    go, stop = multiprocessing.Event(), multiprocessing.Event()
    out = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=load_worker,
                                     args=(i, srv.port, relogin, ready, go, stop, out))
             for i in range(CLIENTS)]
    for p in procs:
        p.start()
    for _ in procs:
        if not ready.acquire(timeout=120):
            raise RuntimeError("clients did not get ready")
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu0 = tree_cpu(srv.proc.pid)
    self0 = time.process_time()
    t0 = time.time()
    go.set()
    time.sleep(SECONDS)
    cpu1 = tree_cpu(srv.proc.pid)
    stop.set()
    results = [out.get(timeout=120) for _ in procs]
    elapsed = time.time() - t0
    for p in procs:
        p.join(30)
    ru2 = resource.getrusage(resource.RUSAGE_CHILDREN)
    errors = [r[3] for r in results if r[1] < 0]
    if errors:
        raise RuntimeError("client errors: %s" % errors[:3])
    loops = sum(r[1] for r in results)
    cmds = sum(r[2] for r in results)
    client_cpu = ru2.ru_utime + ru2.ru_stime - ru.ru_utime - ru.ru_stime + time.process_time() - self0
    return loops / elapsed, cmds / elapsed, (cpu1 - cpu0) / SECONDS, client_cpu / elapsed


# ---- (a): many TLS connections in IDLE

def idle_worker(port, accts, ready_q, stop):
    import asyncio
    ctx = tls_client_context()

    async def one(a, sem, keep):
        async with sem:
            r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
            await r.readline()
            for tag, cmd in ((b"l", b"LOGIN %s %s" % (a.encode(), PASSWORD.encode())),
                             (b"s", b"SELECT INBOX")):
                w.write(tag + b" " + cmd + b"\r\n")
                while True:
                    line = await r.readline()
                    if not line:
                        raise RuntimeError("closed")
                    if line.startswith(tag + b" "):
                        if not line.startswith(tag + b" OK"):
                            raise RuntimeError(line)
                        break
            w.write(b"i IDLE\r\n")
            line = await r.readline()
            if not line.startswith(b"+"):
                raise RuntimeError(line)
            keep.append((r, w))

    async def main():
        sem = asyncio.Semaphore(32)
        keep = []
        res = await asyncio.gather(*(one(a, sem, keep) for a in accts), return_exceptions=True)
        errs = [repr(x) for x in res if isinstance(x, BaseException)]
        ready_q.put((len(keep), errs[:2]))
        while not stop.is_set():
            await asyncio.sleep(0.2)
        for r, w in keep:
            w.close()

    asyncio.run(main())


def tls_client_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def measure_idle(srv, n, settle=0.0):
    procs_n = max(1, min(8, n // 500))
    stop = multiprocessing.Event()
    q = multiprocessing.Queue()
    per = [[account(i % ACCOUNTS) for i in range(k, n, procs_n)] for k in range(procs_n)]
    procs = [multiprocessing.Process(target=idle_worker, args=(srv.tls_port, p, q, stop))
             for p in per]
    base_rss, base_pss, _ = tree_memory(srv.proc.pid)
    t0 = time.time()
    for p in procs:
        p.start()
    try:
        got = [q.get(timeout=600) for _ in procs]
        ok = sum(g[0] for g in got)
        errs = [e for g in got for e in g[1]]
        if ok < n:
            raise RuntimeError("%d of %d connections reached IDLE: %s" % (ok, n, errs))
        setup = time.time() - t0
        time.sleep(1.0 + settle)
        rss, pss, nproc = tree_memory(srv.proc.pid)
        # hibernation: wait until the process count stops falling
        end = time.time() + (120 if settle else 0)
        while time.time() < end:
            time.sleep(2.0)
            rss2, pss2, nproc2 = tree_memory(srv.proc.pid)
            if nproc2 >= nproc:
                break
            rss, pss, nproc = rss2, pss2, nproc2
    finally:
        stop.set()
        for p in procs:
            p.join(60)
    return rss, pss, nproc, base_rss, base_pss, setup


# ------------------------------------------------------------------ servers

def make_cert(work):
    cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    "/CN=bench.example.test", "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    os.chmod(key, 0o644)
    return cert, key


class Postel:
    name = "postel"

    def __init__(self, work, cert, key, hash_):
        self.dir = os.path.join(work, "postel")
        os.makedirs(self.dir)
        self.conf = os.path.join(self.dir, "postel.conf")
        self.port, self.tls_port, self.smtp_port = free_port(), free_port(), free_port()
        self.hash = hash_
        self.proc = None
        with open(self.conf, "w") as f:
            f.write("hostname = bench.example.test\ndata_dir = %s/data\ndomains = %s\n"
                    "log_level = warn\n[listen]\nsmtp = 127.0.0.1:%d\nimap = 127.0.0.1:%d\n"
                    "imaps = 127.0.0.1:%d\n[tls]\ncert = %s\nkey = %s\n"
                    "[limits]\nconnections_per_ip = 100000\nmessage_size = 50M\n"
                    "[auth]\nplaintext_loopback = yes\n"
                    % (self.dir, DOMAIN, self.smtp_port, self.port, self.tls_port, cert, key))

    def cli(self, *args, stdin=None):
        return subprocess.run([POSTEL_BIN, "-c", self.conf] + list(args), input=stdin,
                              capture_output=True, timeout=60, check=True)

    def start(self, first=True):
        if first:
            for i in range(ACCOUNTS):
                self.cli("user", "add", account(i), stdin=(self.hash + "\n").encode())
        self.log = open(os.path.join(self.dir, "postel.log"), "ab")
        self.proc = subprocess.Popen([POSTEL_BIN, "-c", self.conf, "serve"], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log)
        if not wait_port(self.port) or not wait_port(self.tls_port, 2):
            raise RuntimeError("postel does not listen on IMAP")

    def stop(self):
        stop_process(self.proc, 20)


class Dovecot:
    name = "dovecot"

    def __init__(self, work, cert, key, hash_):
        self.dir = os.path.join(work, "dovecot")
        os.makedirs(self.dir)
        self.port, self.tls_port = free_port(), free_port()
        self.cert, self.key = cert, key
        self.proc = None
        nobody = pwd.getpwnam("nobody")
        self.uid, self.gid = nobody.pw_uid, nobody.pw_gid
        for sub in ("run", "state", "home"):
            os.makedirs(os.path.join(self.dir, sub))
        os.chown(os.path.join(self.dir, "home"), self.uid, self.gid)
        os.chmod(self.dir, 0o755)
        self.conf = os.path.join(self.dir, "dovecot.conf")
        with open(os.path.join(self.dir, "passwd"), "w") as f:
            for i in range(ACCOUNTS):
                f.write("%s:{CRYPT}%s::::::\n" % (account(i), hash_))

    def write_conf(self, hibernate):
        limit = CONNS + 200
        with open(self.conf, "w") as f:
            f.write("""# private benchmark instance (bench/imap_bench.py)
base_dir = {d}/run
state_dir = {d}/state
instance_name = postel-imapbench-{port}
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login
# both servers remember verified logins (postel: [auth] cache_ttl, on by
# default); Dovecot's cache is off by default, so it is turned on here
auth_cache_size = 10M
auth_cache_ttl = 1 hour
first_valid_uid = 1
mail_location = maildir:~/Maildir
mail_max_userip_connections = {limit}
default_process_limit = {limit}
default_client_limit = {climit}
{hib}
passdb {{
  driver = passwd-file
  args = scheme=CRYPT username_format=%u {d}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={d}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
  service_count = 0
  process_min_avail = 2
  client_limit = {climit}
  vsz_limit = 2G
}}
service imap {{
  process_limit = {limit}
  unix_listener imap-master {{
    mode = 0666
  }}
}}
service imap-hibernate {{
  client_limit = {climit}
  unix_listener imap-hibernate {{
    mode = 0666
  }}
}}
service auth {{
  client_limit = {climit}
}}
service anvil {{
  client_limit = {climit}
}}
""".format(d=self.dir, port=self.port, tls_port=self.tls_port, uid=self.uid, gid=self.gid,
           cert=self.cert, key=self.key, limit=limit, climit=2 * limit + 100,
           hib="imap_hibernate_timeout = 2s" if hibernate else "imap_hibernate_timeout = 0"))

    def start(self, first=True, hibernate=False):
        self.write_conf(hibernate)
        self.log = open(os.path.join(self.dir, "stdout.log"), "ab")
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log)
        if not wait_port(self.port) or not wait_port(self.tls_port, 2):
            raise RuntimeError("dovecot did not listen: %s" % self.tail())

    def tail(self):
        return tail_file(os.path.join(self.dir, "dovecot.log"))

    def stop(self):
        stop_process(self.proc, 30)


# ------------------------------------------------------------------ main

def feasible_conns():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = CONNS
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    except (ValueError, OSError):
        pass
    # the server side needs one fd per connection (Dovecot's login process
    # two); leave room for listeners, files and the database
    n = min(want, (soft - 500) // 2)
    return max(n, 10)


def part_a(srv, label, n, settle=0.0):
    rss, pss, nproc, brss, bpss, setup = measure_idle(srv, n, settle)
    log("%-22s %d TLS connections in IDLE (%d processes, set up in %.1fs): RSS %.1f MB = %.1f KB/conn"
        " (%.1f KB/conn above idle); PSS %.1f KB/conn"
        % (label, n, nproc, setup, rss / 1e6, rss / n / 1024, (rss - brss) / n / 1024, pss / n / 1024))
    return rss / n


def main():
    if ONLY not in ("", "postel", "dovecot"):
        sys.exit("BENCH_ONLY is postel or dovecot")
    if not os.path.exists(POSTEL_BIN) and ONLY != "dovecot":
        sys.exit("no postel binary at %s" % POSTEL_BIN)
    if not os.path.exists(DOVECOT) and ONLY != "postel":
        log("imap bench: %s missing (apt-get install dovecot-imapd); skipped" % DOVECOT)
        return 0
    n = feasible_conns()
    global CONNS
    CONNS = n
    log("imap bench: %d IDLE connections (BENCH_IMAP_CONNS=%s, fd limit %d), %d clients over %d "
        "accounts x %d messages, %gs per run, %s password hash"
        % (n, os.environ.get("BENCH_IMAP_CONNS", "5000"), resource.getrlimit(resource.RLIMIT_NOFILE)[0],
           CLIENTS, ACCOUNTS, MESSAGES, SECONDS, HASH_KIND))
    work = tempfile.mkdtemp(prefix="imap-bench-", dir="/tmp")
    os.chmod(work, 0o755)
    cert, key = make_cert(work)
    hash_ = make_hash()
    res = {}
    servers = []
    if ONLY in ("", "postel"):
        servers.append(Postel(work, cert, key, hash_))
    if ONLY in ("", "dovecot"):
        servers.append(Dovecot(work, cert, key, hash_))
    try:
        for srv in servers:
            srv.start()
            log("%-8s setup: %d messages appended in %.1fs"
                % (srv.name, ACCOUNTS * MESSAGES, fill(srv.port)))
            if "a" in PARTS:
                res[(srv.name, "a")] = part_a(srv, "%s (a)" % srv.name, n)
            if "b" in PARTS:
                r = run_load(srv, False)
                res[(srv.name, "b")] = r[0]
                log("%-8s (b) mixed workload: %.1f loops/s, %.0f commands/s; server CPU %.2f cores, "
                    "client CPU %.2f cores" % (srv.name, r[0], r[1], r[2], r[3]))
            if "c" in PARTS:
                r = run_load(srv, True)
                res[(srv.name, "c")] = r[0]
                log("%-8s (c) with LOGIN/LOGOUT per loop: %.1f loops/s, %.0f commands/s; server CPU "
                    "%.2f cores, client CPU %.2f cores" % (srv.name, r[0], r[1], r[2], r[3]))
            if srv.name == "dovecot" and "a" in PARTS:
                srv.stop()
                srv.start(first=False, hibernate=True)
                res[("dovecot-hib", "a")] = part_a(srv, "dovecot+hibernate (a)", n, settle=4.0)
            srv.stop()
    finally:
        for srv in servers:
            srv.stop()
        if os.environ.get("BENCH_KEEP"):
            log("imap bench: work directory kept: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    p = lambda k: res.get(k)
    if p(("postel", "a")) and p(("dovecot", "a")):
        log("imap memory per IDLE TLS connection: postel %.1f KB, dovecot %.1f KB, dovecot with "
            "hibernation %s; ratio (dovecot / postel) %.1f (goal: postel under 32 KB)"
            % (p(("postel", "a")) / 1024, p(("dovecot", "a")) / 1024,
               "%.1f KB" % (p(("dovecot-hib", "a")) / 1024) if p(("dovecot-hib", "a")) else "n/a",
               p(("dovecot", "a")) / p(("postel", "a"))))
    for part, goal, what in (("b", 2, "mixed workload"), ("c", 3, "mixed workload with login per loop")):
        if p(("postel", part)) and p(("dovecot", part)):
            log("imap %s: postel %.1f loops/s, dovecot %.1f loops/s, ratio %.2f (goal %d)"
                % (what, p(("postel", part)), p(("dovecot", part)),
                   p(("postel", part)) / p(("dovecot", part)), goal))
    return 0


if __name__ == "__main__":
    sys.exit(main())
