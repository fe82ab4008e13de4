"""Test harness: runs postel as a real server on free loopback ports and
speaks to it with real clients.

Server   one postel process: config file, data dir, log file, start/stop,
         CLI calls (`postel -c CONF ...`) and stored-message readers.
Raw      a raw SMTP connection for input no client library produces
         (bare LF, pipelined writes, BDAT, over-long lines).
"""
import atexit
import os
import re
import signal
import socket
import ssl
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

POSTEL_BIN = os.environ.get("POSTEL_BIN") or os.path.abspath("postel")
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
SUBMISSION_ROLES = ("submission", "submissions")

# Every live server, for the failure report hook in conftest.py, and so
# that none outlives an interrupted run.
LIVE = []


@atexit.register
def _stop_leftovers():
    for srv in list(LIVE):
        if srv.proc is not None and srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()


_ports_given = set()


def free_port():
    """A free loopback port never handed out before in this test process:
    the kernel may offer a port again as soon as the probe socket closes,
    so two roles of one server could otherwise get the same port."""
    for _ in range(1000):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port
    raise RuntimeError("no fresh free port")


def port_accepts(port, host="127.0.0.1"):
    try:
        socket.create_connection((host, port), 0.5).close()
        return True
    except OSError:
        return False


def port_is_free(port, host="127.0.0.1"):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def tls_context():
    """Client context for the self-signed certificate postel generates."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def clean_env():
    env = dict(os.environ)
    env.pop("POSTEL_CONFIG", None)
    return env


def parse_mailbox_status(text):
    """Parses `postel mailbox status` output into {mailbox: {field: int}}.

    DESIGN only says it lists "each mailbox's name, messages, unseen,
    uidnext"; accepted shapes are one line per mailbox with key=value (or
    key: value) pairs, or columns under a header line that names them, or
    JSON (a list of objects or an object keyed by mailbox)."""
    text = text.strip()
    if text.startswith("{") or text.startswith("["):
        import json
        data = json.loads(text)
        out = {}
        items = data.items() if isinstance(data, dict) else [(d.get("name"), d) for d in data]
        for name, d in items:
            out[name] = {k: v for k, v in d.items() if isinstance(v, int)}
        return out
    out = {}
    header = None
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        pairs = re.findall(r"(\w+)\s*[=:]\s*(\d+)", line)
        if pairs:
            name = words[0].rstrip(":")
            if "=" in name:
                m = re.search(r"(?:name|mailbox)\s*[=:]\s*(\S+)", line)
                name = m.group(1) if m else name
            out[name.strip("\"'")] = {k.lower(): int(v) for k, v in pairs}
            continue
        low = [w.lower().rstrip(":") for w in words]
        if "messages" in low and not any(w.isdigit() for w in words):
            header = low
            continue
        if header and len(words) == len(header):
            fields = {}
            for k, v in zip(header, words):
                if v.isdigit():
                    fields[k] = int(v)
            out[words[header.index("name")] if "name" in header else words[0]] = fields
    return out


_dns = None


def test_dns_port():
    """Port of a DNS responder shared by every test server in this process:
    it serves an empty zone, so every name is NXDOMAIN at once and the MX's
    SPF/DKIM/DMARC checks never wait on the outside world."""
    global _dns
    if _dns is None:
        from dnsresponder import DNSResponder
        _dns = DNSResponder({})
        _dns.start()
    return _dns.port


class Server:
    """One postel process with its own config, data dir and ports.

    config: top-level keys plus sections as nested dicts, merged over the
    defaults below; a section value of None removes the section."""

    def __init__(self, tmpdir, config=None, roles=("smtp", "submission", "submissions"),
                 name="postel"):
        self.dir = str(tmpdir)
        os.makedirs(self.dir, exist_ok=True)
        self.name = name
        self.conf = os.path.join(self.dir, name + ".conf")
        self.data_dir = os.path.join(self.dir, name + "-data")
        self.log_path = os.path.join(self.dir, name + ".log")
        self.ports = {role: free_port() for role in roles}
        self.config = {
            "hostname": "mx.example.test",
            "data_dir": self.data_dir,
            "domains": "example.test, example.net",
            "log_level": "debug",
            "listen": {role: "127.0.0.1:%d" % port for role, port in self.ports.items()},
            "limits": {},
            "auth": {},
            "dns": {"nameserver": "127.0.0.1:%d" % test_dns_port(), "dnssec": "no"},
        }
        self.update_config(config or {})
        self.proc = None
        self.log_offset = 0
        self.cache = {}
        self.write_config()

    # ---- configuration
    def update_config(self, config):
        for key, value in config.items():
            if isinstance(value, dict) and isinstance(self.config.get(key), dict):
                self.config[key].update(value)
            elif value is None:
                self.config.pop(key, None)
            else:
                self.config[key] = value

    def write_config(self, extra_text=""):
        lines = ["# written by tests/integration/harness.py"]
        sections = []
        for key, value in self.config.items():
            if isinstance(value, dict):
                sections.append((key, value))
            else:
                lines.append("%s = %s" % (key, value))
        for section, values in sections:
            if not values:
                continue
            lines.append("")
            lines.append("[%s]" % section)
            for key, value in values.items():
                lines.append("%s = %s" % (key, value))
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n" + extra_text)

    # ---- CLI
    def argv(self, *args):
        return [POSTEL_BIN, "-c", self.conf] + list(args)

    def cli(self, *args, input=None, check=True, timeout=30):
        """Runs `postel -c CONF ARGS...`; returns the CompletedProcess
        (stdout/stderr as bytes).  check: raise on a non-zero exit."""
        p = subprocess.run(self.argv(*args), input=input,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout, env=clean_env(), cwd=self.dir)
        if check and p.returncode != 0:
            raise AssertionError("postel %s exited %d\nstdout: %s\nstderr: %s" % (
                " ".join(args), p.returncode, p.stdout.decode(errors="replace"),
                p.stderr.decode(errors="replace")))
        return p

    def user_add(self, address, password):
        self.cli("user", "add", address, input=(password + "\n").encode())

    def alias_add(self, source, dest):
        self.cli("alias", "add", source, dest)

    def mailbox_status(self, account):
        out = self.cli("mailbox", "status", account).stdout.decode()
        status = parse_mailbox_status(out)
        assert status, "cannot parse `mailbox status %s` output: %r" % (account, out)
        return status

    def count(self, account, mailbox="INBOX"):
        return self.mailbox_status(account).get(mailbox, {}).get("messages", 0)

    def fetch(self, account, uid, mailbox="INBOX"):
        """The raw stored message, or None if the UID does not exist.
        Messages are immutable under their UID, so fetched ones are cached
        until the next start()."""
        key = (account.lower(), mailbox, uid)
        if key in self.cache:
            return self.cache[key]
        p = self.cli("mailbox", "fetch", account, mailbox, str(uid), check=False)
        if p.returncode != 0:
            return None
        self.cache[key] = p.stdout
        return p.stdout

    def messages(self, account, mailbox="INBOX", workers=8):
        """Every stored message of a mailbox, as a list of bytes, in UID
        order (UIDs 1 .. uidnext-1; expunged ones are skipped)."""
        st = self.mailbox_status(account).get(mailbox)
        if not st:
            return []
        uidnext = st.get("uidnext")
        expected = st.get("messages", 0)
        if uidnext is None:
            uidnext = expected + 1
        uids = range(1, uidnext)
        with ThreadPoolExecutor(workers) as ex:
            msgs = [m for m in ex.map(lambda u: self.fetch(account, u, mailbox), uids) if m is not None]
        assert len(msgs) == expected, "mailbox status says %d messages, fetched %d" % (expected, len(msgs))
        return msgs

    def find(self, account, token, mailbox="INBOX"):
        """Stored messages that contain token (bytes or str)."""
        if isinstance(token, str):
            token = token.encode()
        return [m for m in self.messages(account, mailbox) if token in m]

    # ---- process
    def start(self, wait=True):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.log_offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        self.cache = {}
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv("serve"), stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=log, env=clean_env(), cwd=self.dir)
        log.close()
        LIVE.append(self)
        if wait:
            try:
                self.wait_ready()
            except BaseException:
                self.stop()     # never leave a half-started server behind
                raise
        return self

    def wait_ready(self, timeout=START_TIMEOUT):
        end = time.time() + timeout
        pending = set(self.ports.values())
        while pending and time.time() < end:
            if self.proc.poll() is not None:
                raise AssertionError("postel serve exited %d at start-up:\n%s" % (
                    self.proc.returncode, self.log_tail()))
            pending = {p for p in pending if not port_accepts(p)}
            if pending:
                time.sleep(0.05)
        if pending:
            raise AssertionError("postel did not listen on %s within %.0fs:\n%s" % (
                sorted(pending), timeout, self.log_tail()))
        # A port accepts as soon as it is bound; a greeting shows the event
        # loop (and its signal handling) is running too.
        role = next((r for r in ("smtp", "submission") if r in self.ports), None)
        while role:
            try:
                with Raw(self.ports[role], timeout=max(1.0, end - time.time())) as c:
                    b = c.read_banner()
                    if b.code == 220:
                        c.cmd("QUIT")
                        break
                    # 421: the probes above may still count against
                    # connections_per_ip until their closes are seen
                    if time.time() > end:
                        raise AssertionError("start-up greeting %r" % b)
            except (OSError, Closed) as e:
                raise AssertionError("no greeting on %s at start-up: %r\n%s" % (role, e, self.log_tail()))
            time.sleep(0.05)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=STOP_TIMEOUT):
        """Waits for the process to end; returns its exit code or None."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        """SIGTERM, then SIGKILL after 5 s.  Returns (exit code, needed_kill)."""
        if self.proc is None:
            return (None, False)
        killed = False
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if self.wait_exit(STOP_TIMEOUT) is None:
                self.proc.kill()
                self.proc.wait()
                killed = True
        if self in LIVE:
            LIVE.remove(self)
        return (self.proc.returncode, killed)

    def stop_checked(self):
        rc, killed = self.stop()
        assert not killed, "postel did not exit within %ss of SIGTERM:\n%s" % (STOP_TIMEOUT, self.log_tail())
        assert rc == 0, "postel exited %s after SIGTERM:\n%s" % (rc, self.log_tail())

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        if self in LIVE:
            LIVE.remove(self)

    def restart(self):
        self.stop_checked()
        return self.start()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self, since_start=False):
        try:
            with open(self.log_path, "rb") as f:
                if since_start:
                    f.seek(self.log_offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines=60):
        return "\n".join(self.log_text().splitlines()[-lines:])

    # ---- clients
    def smtp(self, role="smtp", **kw):
        import smtplib
        if role == "submissions":
            return smtplib.SMTP_SSL("127.0.0.1", self.ports[role], context=tls_context(), timeout=10, **kw)
        return smtplib.SMTP("127.0.0.1", self.ports[role], timeout=10, **kw)

    def raw(self, role="smtp", tls=None, timeout=10):
        return Raw(self.ports[role], tls=(role == "submissions") if tls is None else tls, timeout=timeout)


class Reply:
    def __init__(self, code, lines):
        self.code = code
        self.lines = lines          # text after "NNN-"/"NNN " on each line

    @property
    def text(self):
        return "\n".join(self.lines)

    @property
    def enhanced(self):
        """The RFC 3463 enhanced status code of the last line, or ''."""
        m = re.match(r"([245]\.\d{1,3}\.\d{1,3})\b", self.lines[-1] if self.lines else "")
        return m.group(1) if m else ""

    def __repr__(self):
        return "%d %s" % (self.code, " | ".join(self.lines))


class Closed(Exception):
    pass


class Raw:
    """A raw SMTP connection.  Replies are read line by line from a private
    buffer, so bytes the server sends early are never lost or invented."""

    def __init__(self, port, tls=False, timeout=10, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout)
        if tls:
            self.sock = tls_context().wrap_socket(self.sock)
        self.sock.settimeout(timeout)
        self.timeout = timeout
        self.buf = b""
        self.banner = None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _readline(self, timeout):
        end = time.time() + timeout
        while b"\n" not in self.buf:
            left = end - time.time()
            if left <= 0:
                raise socket.timeout("no complete reply line within %.1fs (have %r)" % (timeout, self.buf))
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                if self.buf:
                    line, self.buf = self.buf, b""
                    return line
                raise Closed("connection closed by server")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line + b"\n"

    def reply(self, timeout=None):
        """Reads one (possibly multi-line) reply."""
        timeout = self.timeout if timeout is None else timeout
        lines = []
        while True:
            raw = self._readline(timeout)
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            m = re.match(r"(\d{3})([ -]?)(.*)", line)
            assert m, "malformed reply line %r" % raw
            lines.append(m.group(3))
            if m.group(2) != "-":
                return Reply(int(m.group(1)), lines)

    def read_banner(self):
        self.banner = self.reply()
        return self.banner

    def cmd(self, line, timeout=None):
        self.send(line + "\r\n" if isinstance(line, str) else line + b"\r\n")
        return self.reply(timeout)

    def ehlo(self, name="client.example.org"):
        r = self.cmd("EHLO " + name)
        assert r.code == 250, "EHLO: %r" % r
        return r

    def no_reply_within(self, seconds):
        """True if nothing arrives (and the connection stays open) for seconds."""
        if self.buf:
            return False
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, ssl.SSLError) as e:
            if isinstance(e, ssl.SSLError) and "timed out" not in str(e):
                raise
            return True
        finally:
            self.sock.settimeout(self.timeout)
        self.buf += data
        return False

    def is_closed(self, timeout=5):
        """True if the server closes the connection within timeout (any
        pending bytes are discarded)."""
        end = time.time() + timeout
        while time.time() < end:
            self.sock.settimeout(max(0.01, end - time.time()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
            except ssl.SSLError:
                return True
            if not data:
                return True
            self.buf += data
        return False

    def starttls(self):
        r = self.cmd("STARTTLS")
        assert r.code == 220, "STARTTLS: %r" % r
        assert not self.buf, "server sent bytes after 220 to STARTTLS: %r" % self.buf
        self.sock = tls_context().wrap_socket(self.sock)
        self.sock.settimeout(self.timeout)
        return r

    def transaction(self, sender, rcpts, data, mail_params="", rcpt_params=""):
        """MAIL, RCPT..., DATA with dot-stuffing; returns the final reply."""
        r = self.cmd("MAIL FROM:<%s>%s" % (sender, mail_params))
        assert r.code == 250, "MAIL: %r" % r
        for rc in rcpts:
            r = self.cmd("RCPT TO:<%s>%s" % (rc, rcpt_params))
            assert r.code == 250, "RCPT %s: %r" % (rc, r)
        r = self.cmd("DATA")
        assert r.code == 354, "DATA: %r" % r
        self.send(dot_stuff(data) + b".\r\n")
        return self.reply()


def dot_stuff(data):
    if isinstance(data, str):
        data = data.encode()
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    lines = data.split(b"\r\n")
    return b"\r\n".join(b"." + l if l.startswith(b".") else l for l in lines)


def assert_reply(reply, code, enhanced, what=""):
    """Checks a Reply or an smtplib (code, bytes) pair: the code and the
    RFC 3463 enhanced status code (not the text)."""
    if isinstance(reply, tuple):
        c, msg = reply
        if isinstance(msg, bytes):
            msg = msg.decode(errors="replace")
        last = msg.splitlines()[-1] if msg else ""
        m = re.match(r"([245]\.\d{1,3}\.\d{1,3})\b", last)
        reply = Reply(c, msg.splitlines() or [""])
        enh = m.group(1) if m else ""
    else:
        enh = reply.enhanced
    assert (reply.code, enh) == (code, enhanced), "%s: expected %d %s, got %r" % (
        what or "reply", code, enhanced, reply)


def make_message(token, sender="sender@example.org", to="alice@example.test", body=None,
                 extra_headers=""):
    """A small RFC 5322 message with CRLF line ends carrying token in its
    Subject, Message-ID and body."""
    body = body if body is not None else "Hello, this is %s.\r\nSecond line.\r\n" % token
    return ("From: <%s>\r\nTo: <%s>\r\nSubject: test %s\r\nMessage-ID: <%s@test.example.org>\r\n"
            "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n%s\r\n%s" % (
                sender, to, token, token, extra_headers, body)).encode()


_seq = [0]


def token(prefix="t"):
    _seq[0] += 1
    return "%s-%d-%d-%d" % (prefix, os.getpid(), int(time.time() * 1000) % 10**8, _seq[0])


def headers_of(msg):
    """The header block of a stored message as text (unfolded lines)."""
    head = re.split(rb"\r?\n\r?\n", msg, maxsplit=1)[0].decode("utf-8", "replace")
    return re.sub(r"\r?\n[ \t]+", " ", head)


def header_values(msg, name):
    out = []
    for line in re.split(r"\r?\n", headers_of(msg)):
        k, _, v = line.partition(":")
        if k.strip().lower() == name.lower():
            out.append(v.strip())
    return out


DEV_PORTS = {"smtp": 10025, "submission": 10587, "submissions": 10465}


class DevServer(Server):
    """`postel serve` with no configuration at all (DESIGN section 4): run
    in its own directory (./postel-data), on the fixed development ports.
    Only one can run at a time on a machine."""

    def __init__(self, tmpdir):
        self.dir = str(tmpdir)
        os.makedirs(self.dir, exist_ok=True)
        self.name = "dev"
        self.conf = None
        self.data_dir = os.path.join(self.dir, "postel-data")
        self.log_path = os.path.join(self.dir, "dev.log")
        self.ports = dict(DEV_PORTS)
        self.proc = None
        self.log_offset = 0
        self.cache = {}

    def argv(self, *args):
        return [POSTEL_BIN] + list(args)

    def write_config(self, extra_text=""):
        raise AssertionError("the development defaults have no configuration file")

    @staticmethod
    def unavailable():
        """Why a dev-default server cannot run here, or None."""
        for path in ("/etc/postel/postel.conf",):
            if os.path.exists(path):
                return "%s exists: postel would use it instead of the defaults" % path
        busy = [p for p in DEV_PORTS.values() if not port_is_free(p)]
        if busy:
            return "development ports %s are in use (is `make run` running?)" % busy
        return None


# Accounts every standard test server has.
USERS = {
    "alice@example.test": "alice-Secret-1",
    "bob@example.test": "bob-Secret-2",
    "carol@example.test": "carol-Secret-3",
    "dave@example.test": "dave-Secret-4",
}


def standard_server(tmpdir, config=None, users=USERS, start=True, **kw):
    """A Server with the standard accounts, started unless start=False."""
    srv = Server(tmpdir, config, **kw)
    for addr, pw in users.items():
        srv.user_add(addr, pw)
    if start:
        srv.start()
    return srv


def stop_all(servers):
    """Stops every server still running (SIGTERM, SIGKILL after 5 s);
    returns a list of problems (no clean exit) for the caller to report."""
    errors = []
    for srv in servers:
        if srv.proc is None:
            continue
        if srv.proc.poll() is not None and srv not in LIVE:
            continue            # stopped or killed by the test itself
        rc, killed = srv.stop()
        if killed:
            errors.append("%s: did not exit within 5 s of SIGTERM" % srv.conf)
        elif rc != 0:
            errors.append("%s: exited %s after SIGTERM (crashed?)" % (srv.conf, rc))
    return errors


def dev_password(srv, timeout=10):
    """The demo@localhost password a dev-default server printed, waiting
    for the line (it may come just after the ports open)."""
    end = time.time() + timeout
    while True:
        found = re.findall(r"password=(\S+)", srv.log_text())
        if found or time.time() > end:
            break
        time.sleep(0.1)
    assert found, "no 'password=' line on stderr at first start:\n" + srv.log_tail()
    return found[-1].strip("\"'.,;")
