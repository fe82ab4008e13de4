"""A small authoritative DNS responder for tests (python3-dnslib).

Serves zone data given as a dict over UDP and TCP on 127.0.0.1:PORT:

    {"example.test": [{"MX": [10, "mx1.example.test"]},
                      {"A": "192.0.2.1"}, {"AAAA": "2001:db8::1"},
                      {"TXT": "v=spf1 -all"}, {"TXT": ["two ", "strings"]},
                      {"PTR": "host.example.test"}, {"CNAME": "other.test"},
                      "TIMEOUT"]}

This is the shape of the openspf suite's `zonedata`, with its driver
conventions (the ones pyspf's test driver follows):
  - an "SPF" entry is also served as TXT unless the name has a TXT entry of
    its own ("TXT: NONE" only says: no TXT here);
  - "TIMEOUT" makes a query go unanswered when no entry of the asked type
    (or CNAME) comes before it in the list, so ["TXT": ..., "TIMEOUT"]
    answers TXT and times out everything else; "SERVFAIL" likewise answers
    with RCODE 2 (not an openspf convention; for postel's own tests);
  - strings are turned into octets with latin-1 where they can be, so
    "\\xEF" in the YAML is the octet 0xEF;
  - a name absent from the data is NXDOMAIN, unless it is an empty
    non-terminal (a parent of a name present), which is NODATA.
CNAMEs are followed inside the data (loops stop) as a recursive server would.

In-process use:  r = DNSResponder(zone); r.start(); r.port; r.set_zone(z);
r.stop().  Command line: dnsresponder.py ZONE.{json,yaml} [--port N]
prints "port N" and serves until killed.
"""
import json
import socket
import struct
import sys
import threading

from dnslib import AAAA, CNAME, MX, PTR, QTYPE, RCODE, RR, SOA, TXT, A, DNSLabel, DNSRecord

TTL = 300
TYPES = {"A": QTYPE.A, "AAAA": QTYPE.AAAA, "MX": QTYPE.MX, "TXT": QTYPE.TXT, "SPF": 99,
         "PTR": QTYPE.PTR, "CNAME": QTYPE.CNAME, "NS": QTYPE.NS}


def to_bytes(s):
    if isinstance(s, bytes):
        return s
    try:
        return s.encode("latin-1")
    except UnicodeEncodeError:
        return s.encode("utf-8")


def name_key(name):
    """Lower-case text key of a name, without the trailing dot."""
    if isinstance(name, DNSLabel):
        return b".".join(name.label).decode("latin-1").lower()
    return name.rstrip(".").lower() if name not in ("", ".") else ""


def label_of(name):
    """A DNSLabel from a text name, every byte kept (spaces, ':', '/', ...)."""
    name = name.rstrip(".") if name not in ("", ".") else ""
    return DNSLabel([to_bytes(p) for p in name.split(".")] if name else [])


def txt_strings(v):
    """TXT data: one string or a list of strings; each cut into 255-octet pieces.
    A record of no strings (illegal: RFC 1035 3.3.14 wants one or more, and
    resolvers reject it as malformed) is served as one empty string, the
    nearest thing a real server can publish."""
    parts = v if isinstance(v, list) else [v]
    if not parts:
        return [b""]
    out = []
    for p in parts:
        b = to_bytes(str(p))
        if not b:
            out.append(b"")
        while b:
            out.append(b[:255])
            b = b[255:]
    return out


def normalize(zonedata):
    """zonedata -> {key: [(type, value) | "TIMEOUT", ...]} with SPF->TXT copies."""
    zone = {}
    for name, entries in (zonedata or {}).items():
        out, spf_copies, has_txt = [], [], False
        for e in entries or []:
            if e in ("TIMEOUT", "SERVFAIL"):
                out.append(e)
                continue
            for t, v in e.items():
                t = t.upper()
                if t == "TXT":
                    has_txt = True
                if t == "SPF":
                    spf_copies.append(("TXT", v))
                if t in ("TXT", "SPF") and v == "NONE":
                    continue
                out.append((t, v))
        if not has_txt:
            out.extend(spf_copies)
        zone[name_key(str(name))] = out
    return zone


def rdata(t, v):
    if t == "A":
        return A(v)
    if t == "AAAA":
        return AAAA(v)
    if t == "MX":
        pref, host = v
        return MX(label_of(host), int(pref))
    if t in ("TXT", "SPF"):
        return TXT(txt_strings(v))
    if t == "PTR":
        return PTR(label_of(v))
    if t == "CNAME":
        return CNAME(label_of(v))
    raise ValueError("unsupported type %s" % t)


class Zone:
    def __init__(self, zonedata):
        self.data = normalize(zonedata)

    def exists(self, key):
        if key in self.data:
            return True
        suffix = "." + key
        return any(k.endswith(suffix) for k in self.data) or key == ""

    def answer(self, request):
        """A reply record, or None for a query that must go unanswered."""
        q = request.q
        qtype = q.qtype
        reply = request.reply()
        reply.header.aa = 1
        reply.header.ra = 1
        owner, key, seen = q.qname, name_key(q.qname), set()
        for _ in range(16):
            entries = self.data.get(key)
            if entries is None:
                if not self.exists(key):
                    reply.header.rcode = RCODE.NXDOMAIN
                break
            matches, cname = [], None
            for e in entries:
                if e in ("TIMEOUT", "SERVFAIL"):
                    if not matches and cname is None:
                        if e == "TIMEOUT":
                            return None
                        reply.header.rcode = RCODE.SERVFAIL
                        return reply
                    continue
                t, v = e
                if TYPES.get(t) == qtype:
                    matches.append((t, v))
                elif t == "CNAME" and cname is None:
                    cname = v
            if matches:
                for t, v in matches:
                    reply.add_answer(RR(owner, qtype, rdata=rdata(t, v), ttl=TTL))
                return reply
            if cname is None:
                break
            reply.add_answer(RR(owner, QTYPE.CNAME, rdata=CNAME(label_of(cname)), ttl=TTL))
            seen.add(key)
            owner, key = label_of(cname), name_key(cname)
            if key in seen:
                return reply
        # NXDOMAIN or NODATA: an SOA so resolvers can cache the negative answer.
        reply.add_auth(RR(DNSLabel([]), QTYPE.SOA, ttl=TTL,
                          rdata=SOA("ns.test", "hostmaster.test", (1, 3600, 600, 86400, 5))))
        return reply


class DNSResponder:
    def __init__(self, zonedata=None, host="127.0.0.1", port=0):
        self.zone = Zone(zonedata)
        self.host = host
        self.queries = []             # (name, type) seen, for tests that care
        # UDP and TCP on one port: with port 0 the kernel picks a free UDP
        # port whose TCP twin may be taken by another process; try again.
        for attempt in range(100):
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.udp.bind((host, port))
            self.port = self.udp.getsockname()[1]
            self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                self.tcp.bind((host, self.port))
                break
            except OSError:
                self.udp.close()
                self.tcp.close()
                if port != 0 or attempt == 99:
                    raise
        self.tcp.listen(64)
        self.threads = []
        self.running = False

    def set_zone(self, zonedata):
        self.zone = Zone(zonedata)
        self.queries = []

    def handle(self, data):
        try:
            request = DNSRecord.parse(data)
        except Exception:
            return None
        zone = self.zone
        self.queries.append((name_key(request.q.qname), request.q.qtype))
        reply = zone.answer(request)
        return reply.pack() if reply is not None else None

    def serve_udp(self):
        while self.running:
            try:
                data, peer = self.udp.recvfrom(65535)
            except OSError:
                return
            out = self.handle(data)
            if out is not None:
                try:
                    self.udp.sendto(out, peer)
                except OSError:
                    pass

    def serve_tcp_conn(self, conn):
        with conn:
            while self.running:
                hdr = self.recv_exact(conn, 2)
                if hdr is None:
                    return
                data = self.recv_exact(conn, struct.unpack("!H", hdr)[0])
                if data is None:
                    return
                out = self.handle(data)
                if out is not None:
                    conn.sendall(struct.pack("!H", len(out)) + out)

    @staticmethod
    def recv_exact(conn, n):
        buf = b""
        while len(buf) < n:
            try:
                chunk = conn.recv(n - len(buf))
            except OSError:
                return None
            if not chunk:
                return None
            buf += chunk
        return buf

    def serve_tcp(self):
        while self.running:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            t = threading.Thread(target=self.serve_tcp_conn, args=(conn,), daemon=True)
            t.start()

    def start(self):
        self.running = True
        for fn in (self.serve_udp, self.serve_tcp):
            t = threading.Thread(target=fn, daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def stop(self):
        self.running = False
        for s in (self.udp, self.tcp):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        for t in self.threads:
            t.join(2)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zone", help="zone data file (.json or .yaml)")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)
    with open(args.zone, encoding="utf-8") as f:
        if args.zone.endswith((".yaml", ".yml")):
            import yaml
            data = yaml.safe_load(f)
        else:
            data = json.load(f)
    r = DNSResponder(data, port=args.port).start()
    print("port %d" % r.port, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    r.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
