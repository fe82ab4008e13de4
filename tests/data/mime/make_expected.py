#!/usr/bin/python3
"""Regenerate the expected IMAP output of the MIME corpus with Dovecot.

Every NNN-name.eml in this directory is APPENDed, byte for byte, to a private
Dovecot instance (Debian's dovecot-imapd, run as root with its own config on
a loopback port, Maildir under a temporary directory), then
    FETCH n BODYSTRUCTURE  -> NNN-name.bodystructure
    FETCH n BODY           -> NNN-name.body
    FETCH n ENVELOPE       -> NNN-name.envelope
Each expected file holds the item's value exactly as Dovecot sent it (IMAP
literals included, "{n}\\r\\n" and all), without a trailing newline.

Usage:
    make_expected.py              regenerate every expected file
    make_expected.py --show F...  print Dovecot's answer for arbitrary files
                                  (for experiments; writes nothing)
A file NNN-name.noexpect next to an .eml means "keep the hand-written
expected files" (used only where postel deliberately differs; see README).
Messages in make_corpus.GENERATED are built, not stored; for them only the
length and FNV-1a 64 hash of each answer go to NNN-name.digest.
"""
import glob
import imaplib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

# Dovecot never runs mail processes as root: the mailbox belongs to nobody.
MAIL_UID = MAIL_GID = 65534
HERE = os.path.dirname(os.path.abspath(__file__))
ITEMS = [("BODYSTRUCTURE", "bodystructure"), ("BODY", "body"),
         ("ENVELOPE", "envelope")]

CONF = """\
base_dir = {tmp}/run
state_dir = {tmp}/state
log_path = {tmp}/dovecot.log
info_log_path = {tmp}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:{tmp}/mail/%u
default_login_user = dovenull
default_internal_user = dovecot
passdb {{
  driver = static
  args = password=pass
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={tmp}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Dovecot:
    def __enter__(self):
        self.tmp = tempfile.mkdtemp(prefix="postel-dovecot-")
        os.chmod(self.tmp, 0o755)
        for d in ("run", "state", "mail", "home"):
            os.mkdir(os.path.join(self.tmp, d))
        for d in ("mail", "home"):
            os.chown(os.path.join(self.tmp, d), MAIL_UID, MAIL_GID)
        self.port = free_port()
        conf = os.path.join(self.tmp, "dovecot.conf")
        with open(conf, "w") as f:
            f.write(CONF.format(tmp=self.tmp, port=self.port,
                                uid=MAIL_UID, gid=MAIL_GID))
        self.proc = subprocess.Popen(["dovecot", "-F", "-c", conf])
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise SystemExit("dovecot did not start; see " + self.tmp)
        try:
            self.imap = imaplib.IMAP4("127.0.0.1", self.port)
            self.imap.login("test", "pass")
            self.imap.select("INBOX")
        except Exception:
            self.__exit__(*sys.exc_info())
            raise
        self.count = 0
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            try:
                with open(os.path.join(self.tmp, "dovecot.log")) as f:
                    sys.stderr.write(f.read()[-3000:])
            except OSError:
                pass
        try:
            self.imap.logout()
        except Exception:
            pass
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def append(self, data):
        typ, resp = self.imap.append("INBOX", None, None, data)
        if typ != "OK":
            raise RuntimeError("APPEND failed: %r" % resp)
        self.count += 1
        return self.count

    def fetch(self, seq, item):
        """Return the raw bytes of one FETCH item, literals rebuilt."""
        typ, data = self.imap.fetch(str(seq), "(%s)" % item)
        if typ != "OK":
            raise RuntimeError("FETCH failed: %r" % data)
        raw = b""
        for d in data:
            if isinstance(d, tuple):
                raw += d[0] + b"\r\n" + d[1]
            else:
                raw += d
        prefix = ("%d (%s " % (seq, item)).encode()
        if not raw.startswith(prefix) or not raw.endswith(b")"):
            raise RuntimeError("unexpected FETCH response: %r" % raw)
        return raw[len(prefix):-1]


def fnv1a64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
    return h


def generated(dc):
    """Messages too big to store: keep only length and hash of answers."""
    sys.path.insert(0, HERE)
    sys.dont_write_bytecode = True     # no __pycache__ in the corpus
    import make_corpus
    for name, build in make_corpus.GENERATED.items():
        seq = dc.append(build())
        with open(os.path.join(HERE, name + ".digest"), "w") as f:
            for item, ext in ITEMS:
                value = dc.fetch(seq, item)
                f.write("%s %d %016x\n" % (ext, len(value), fnv1a64(value)))


def main(argv):
    show = argv[1:2] == ["--show"]
    if show:
        files = argv[2:]
    else:
        files = sorted(glob.glob(os.path.join(HERE, "[0-9][0-9][0-9]-*.eml")))
    with Dovecot() as dc:
        for path in files:
            base = path[:-4] if path.endswith(".eml") else path
            if not show and os.path.exists(base + ".noexpect"):
                continue
            with open(path, "rb") as f:
                data = f.read()
            seq = dc.append(data)
            if show:
                sys.stdout.buffer.write(b"== " + path.encode() + b"\n")
            for item, ext in ITEMS:
                value = dc.fetch(seq, item)
                if show:
                    sys.stdout.buffer.write(item.encode() + b" " + value + b"\n")
                else:
                    with open(base + "." + ext, "wb") as f:
                        f.write(value)
        if not show:
            generated(dc)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
