"""DKIM against an independent implementation (python3-dkim), both ways:
messages signed by `postel dkim sign` verify with dkim.verify (the key
record taken from `postel dkim keygen`'s output), and messages signed by
python3-dkim (RSA and Ed25519, relaxed and simple) verify with `postel dkim
verify --key-file`.  Also the RFC 8463 example, keygen's files and records,
and the failure verdicts through the command line."""
import base64
import os
import re
import stat
import subprocess

import dkim
import nacl.encoding
import nacl.signing
import pytest

POSTEL_BIN = os.environ.get("POSTEL_BIN") or os.path.abspath("postel")
DATA = "/usr/lib/python3/dist-packages/dkim/tests/data/"

MESSAGES = {
    "plain": (b"From: Alice Example <alice@example.org>\r\n"
              b"To: Bob <bob@example.net>\r\n"
              b"Subject: Lunch   tomorrow?\r\n"
              b"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
              b"Message-ID: <lunch-1@example.org>\r\n"
              b"\r\n"
              b"Hi Bob,\r\n\r\nlunch at  noon?\t \r\n\r\n-- \r\nAlice\r\n\r\n\r\n"),
    "folded": (b"From: \"Example, Alice\" <alice@example.org>\r\n"
               b"To: bob@example.net,\r\n\tcarol@example.net\r\n"
               b"Cc: dave@example.net\r\n"
               b"Subject: a rather long subject line that\r\n  goes on and on\r\n"
               b"MIME-Version: 1.0\r\n"
               b"Content-Type: text/plain; charset=utf-8\r\n"
               b"Content-Transfer-Encoding: 8bit\r\n"
               b"X-Unsigned: whatever\r\n"
               b"\r\n"
               + "Grüße aus Köln\r\n".encode() + b"  indented line\r\n"),
    "empty-body": (b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: empty\r\n\r\n"),
    "no-body": (b"From: alice@example.org\r\nSubject: headers only\r\n"),
    "lf-only": (b"From: alice@example.org\nTo: bob@example.net\nSubject: unix\n\nline one\n\nline two\n"),
    "list": (b"From: alice@example.org\r\nTo: list@example.net\r\nList-Id: <l.example.net>\r\n"
             b"List-Unsubscribe: <mailto:u@example.net>\r\nReferences: <a@x>\r\n <b@x>\r\n"
             b"In-Reply-To: <b@x>\r\nSubject: Re: thread\r\n\r\nreply\r\n"),
}


def run(args, input=None, check=True, cfg=None):
    cmd = [POSTEL_BIN]
    if cfg is not None:
        cmd += ["-c", str(cfg)]
    env = dict(os.environ)
    env.pop("POSTEL_CONFIG", None)
    p = subprocess.run(cmd + args, input=input, capture_output=True, env=env, timeout=60)
    if check and p.returncode != 0:
        raise AssertionError("postel %s: exit %d\n%s" % (" ".join(args), p.returncode,
                                                       p.stderr.decode(errors="replace")))
    return p


@pytest.fixture
def cfg(tmp_path):
    data = tmp_path / "data"
    conf = tmp_path / "postel.conf"
    conf.write_text("hostname = mx.example.org\ndata_dir = %s\n" % data)
    return conf


def zone_records(text):
    """Name (with trailing dot) -> record text, from keygen's zone-file lines."""
    recs = {}
    for line in text.splitlines():
        m = re.match(r'^(\S+)\s+IN\s+TXT\s+\(\s*(.*?)\s*\)\s*$', line)
        if m:
            strings = re.findall(r'"([^"]*)"', m.group(2))
            assert all(len(s) <= 255 for s in strings), line
            recs[m.group(1)] = "".join(strings)
    return recs


def dnsfunc_for(recs):
    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        if not name.endswith("."):
            name += "."
        return recs.get(name, "").encode()
    return dnsfunc


def signatures(msg):
    return len(re.findall(rb"(?mi)^DKIM-Signature:", msg))


def keygen(cfg, domain, *args):
    p = run(["dkim", "keygen", domain] + list(args), cfg=cfg)
    return p.stdout.decode()


# ------------------------------------------------------------- keygen

def test_keygen_files_and_record(cfg, tmp_path):
    out = keygen(cfg, "example.org")
    recs = zone_records(out)
    assert len(recs) == 1, out
    (name, rec), = recs.items()
    assert re.match(r"^postel-\d{6}\._domainkey\.example\.org\.$", name), name
    assert rec.startswith("v=DKIM1; k=rsa; p=MII"), rec
    sel = name.split(".")[0]
    key = tmp_path / "data" / "dkim" / ("example.org.%s.key" % sel)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in key.read_bytes()
    der = base64.b64decode(rec.split("p=")[1])
    assert 290 <= len(der) <= 300            # 2048-bit SubjectPublicKeyInfo

    out = keygen(cfg, "Example.ORG", "--algo", "ed25519", "--selector", "ed1")
    rec = zone_records(out)["ed1._domainkey.example.org."]
    assert rec.startswith("v=DKIM1; k=ed25519; p=")
    assert len(base64.b64decode(rec.split("p=")[1])) == 32

    p = run(["dkim", "keygen", "example.org", "--selector", "ed1"], cfg=cfg, check=False)
    assert p.returncode != 0 and b"exists" in p.stderr
    p = run(["dkim", "keygen", "example.org", "--algo", "dsa"], cfg=cfg, check=False)
    assert p.returncode == 64
    p = run(["dkim", "keygen", "../etc"], cfg=cfg, check=False)
    assert p.returncode == 64


# ------------------------------------------- postel signs, dkimpy verifies

@pytest.mark.parametrize("algos", [("rsa2048",), ("ed25519",), ("rsa2048", "ed25519")])
@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_postel_signed_verifies_in_dkimpy(cfg, algos, name):
    recs = {}
    for a in algos:
        recs.update(zone_records(keygen(cfg, "example.org", "--algo", a, "--selector", "s-" + a)))
    signed = run(["dkim", "sign"], input=MESSAGES[name], cfg=cfg).stdout
    assert signed.endswith(MESSAGES[name])
    assert signatures(signed) == len(algos)
    assert re.search(rb"h=from:from:", signed), signed[:400]
    for line in signed.split(b"\n"):
        assert len(line.rstrip(b"\r")) <= 78 or not line.startswith((b" ", b"DKIM")), line
    d = dkim.DKIM(signed)
    for i in range(len(algos)):
        assert d.verify(idx=i, dnsfunc=dnsfunc_for(recs)), "signature %d of %s: %s" % (i, name, signed[:600])
    # And postel's own verifier agrees, with the records keygen printed.
    keyfile = cfg.parent / "keys"
    keyfile.write_text("\n".join("%s %s" % kv for kv in recs.items()) + "\n")
    p = run(["dkim", "verify", "--key-file", str(keyfile)], input=signed, cfg=cfg)
    assert p.stdout.decode().count("dkim=pass") == len(algos), p.stdout


def test_postel_signature_breaks_on_change(cfg):
    recs = zone_records(keygen(cfg, "example.org"))
    signed = run(["dkim", "sign"], input=MESSAGES["plain"], cfg=cfg).stdout
    assert not dkim.verify(signed.replace(b"noon", b"one"), dnsfunc=dnsfunc_for(recs))
    assert not dkim.verify(signed.replace(b"Lunch", b"Dinner"), dnsfunc=dnsfunc_for(recs))
    # From is over-signed: a second From added later breaks the signature.
    assert not dkim.verify(b"From: mallory@evil.test\r\n" + signed, dnsfunc=dnsfunc_for(recs))


def test_sign_with_explicit_key_and_config_override(cfg, tmp_path):
    keygen(cfg, "example.org", "--selector", "generated")
    keyfile = tmp_path / "data" / "dkim" / "example.org.generated.key"
    signed = run(["dkim", "sign", "--domain", "example.org", "--selector", "manual", "--key",
                  str(keyfile)], input=MESSAGES["plain"], cfg=cfg).stdout
    assert b"s=manual;" in signed
    # A [dkim DOMAIN] section wins over the keys in data_dir.
    cfg.write_text(cfg.read_text() + "\n[dkim example.org]\nselector = fromconf\nkey = %s\n" % keyfile)
    signed = run(["dkim", "sign"], input=MESSAGES["plain"], cfg=cfg).stdout
    assert b"s=fromconf;" in signed and signatures(signed) == 1
    p = run(["dkim", "sign"], input=b"From: x@nokey.example\r\n\r\nhi\r\n", cfg=cfg, check=False)
    assert p.returncode != 0 and b"no DKIM key" in p.stderr


# ------------------------------------------- dkimpy signs, postel verifies

def rsa_key():
    pem = subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
                         capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubout", "-outform", "DER"], input=pem,
                         capture_output=True, check=True).stdout
    return pem, "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def ed_key():
    sk = nacl.signing.SigningKey.generate()
    return (base64.b64encode(bytes(sk)),
            "v=DKIM1; k=ed25519; p=" + base64.b64encode(bytes(sk.verify_key)).decode())


@pytest.fixture(scope="module")
def keys():
    return {"rsa-sha256": rsa_key(), "ed25519-sha256": ed_key()}


def postel_verify(cfg, msg, records):
    keyfile = cfg.parent / "keys"
    keyfile.write_text("".join("%s %s\n" % kv for kv in records.items()))
    p = run(["dkim", "verify", "--key-file", str(keyfile)], input=msg, cfg=cfg, check=False)
    return p.returncode, p.stdout.decode().splitlines()


@pytest.mark.parametrize("canon", [(b"relaxed", b"relaxed"), (b"simple", b"simple"),
                                   (b"relaxed", b"simple"), (b"simple", b"relaxed")])
@pytest.mark.parametrize("alg", ["rsa-sha256", "ed25519-sha256"])
@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_dkimpy_signed_verifies_in_postel(cfg, keys, alg, canon, name):
    priv, rec = keys[alg]
    msg = MESSAGES[name]
    sig = dkim.sign(msg, b"py", b"example.org", priv, canonicalize=canon,
                    signature_algorithm=alg.encode())
    rc, lines = postel_verify(cfg, sig + msg, {"py._domainkey.example.org": rec})
    assert rc == 0 and len(lines) == 1 and lines[0].startswith("dkim=pass"), (lines, sig)
    assert "header.a=%s" % alg in lines[0] and "header.d=example.org" in lines[0]
    if name in ("plain", "folded"):
        rc, lines = postel_verify(cfg, sig + msg.replace(b"\r\n\r\n", b"\r\n\r\nX", 1),
                                  {"py._domainkey.example.org": rec})
        assert rc == 1 and lines[0].startswith("dkim=fail (body hash mismatch)"), lines


def test_dkimpy_two_signatures_and_length(cfg, keys):
    msg = MESSAGES["folded"]
    s1 = dkim.sign(msg, b"r", b"example.org", keys["rsa-sha256"][0])
    s2 = dkim.sign(s1 + msg, b"e", b"example.org", keys["ed25519-sha256"][0],
                   signature_algorithm=b"ed25519-sha256", include_headers=[b"from", b"subject", b"to"])
    recs = {"r._domainkey.example.org": keys["rsa-sha256"][1],
            "e._domainkey.example.org": keys["ed25519-sha256"][1]}
    rc, lines = postel_verify(cfg, s2 + s1 + msg, recs)
    assert rc == 0 and len(lines) == 2 and all(l.startswith("dkim=pass") for l in lines), lines
    # l=: text appended after signing leaves the signature valid.
    s3 = dkim.sign(msg, b"r", b"example.org", keys["rsa-sha256"][0], length=True)
    assert b"l=" in s3
    rc, lines = postel_verify(cfg, s3 + msg + b"appended\r\n", recs)
    assert rc == 0 and lines[0].startswith("dkim=pass") and "body partly signed" in lines[0], lines


# -------------------------------------------------- vectors and verdicts

def test_rfc8463_example(cfg):
    if not os.path.exists(DATA + "rfc6376.signed.msg"):
        pytest.skip("python3-dkim test data not installed")
    recs = {"brisbane._domainkey.football.example.com":
            "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
            "test._domainkey.football.example.com": open(DATA + "test.txt").read().strip()}
    msg = open(DATA + "rfc6376.signed.msg", "rb").read()
    rc, lines = postel_verify(cfg, msg, recs)
    assert rc == 0 and len(lines) == 2, lines
    assert lines[0].startswith("dkim=pass") and "header.s=brisbane" in lines[0]
    assert lines[1].startswith("dkim=pass") and "header.s=test" in lines[1]


def test_verdicts(cfg, keys):
    msg = MESSAGES["plain"]
    signed = dkim.sign(msg, b"py", b"example.org", keys["rsa-sha256"][0]) + msg
    name = "py._domainkey.example.org"
    assert postel_verify(cfg, msg, {})[1] == ["dkim=none"]
    rc, lines = postel_verify(cfg, signed, {name: "TEMPFAIL"})
    assert rc == 1 and lines[0].startswith("dkim=temperror"), lines
    rc, lines = postel_verify(cfg, signed, {})
    assert rc == 1 and lines[0].startswith("dkim=permerror (no key for signature)"), lines
    rc, lines = postel_verify(cfg, signed, {name: "v=DKIM1; k=rsa; p="})
    assert rc == 1 and lines[0].startswith("dkim=permerror (key revoked)"), lines
    rc, lines = postel_verify(cfg, signed, {name: keys["ed25519-sha256"][1]})
    assert lines[0].startswith("dkim=permerror (key type does not match a=)"), lines
    rc, lines = postel_verify(cfg, signed, {name: keys["rsa-sha256"][1].replace("k=rsa;", "k=rsa; t=y;")})
    assert rc == 0 and lines[0].startswith("dkim=pass") and "testing" in lines[0], lines
    rc, lines = postel_verify(cfg, signed.replace(b"noon", b"one"),
                              {name: keys["rsa-sha256"][1].replace("k=rsa;", "k=rsa; t=y;")})
    assert rc == 1 and lines[0].startswith("dkim=neutral"), lines
    # RFC 8301: rsa-sha1 is not acceptable.
    sha1 = dkim.sign(msg, b"py", b"example.org", keys["rsa-sha256"][0], signature_algorithm=b"rsa-sha1")
    rc, lines = postel_verify(cfg, sha1 + msg, {name: keys["rsa-sha256"][1]})
    assert rc == 1 and lines[0].startswith("dkim=permerror (rsa-sha1"), lines
    # RFC 8301: RSA keys under 1024 bits fail.
    pem = subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:768"],
                         capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubout", "-outform", "DER"], input=pem,
                         capture_output=True, check=True).stdout
    rec = "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()
    rc, lines = postel_verify(cfg, sign_small_key(msg, pem), {name: rec})
    assert rc == 1 and lines[0].startswith("dkim=permerror (RSA key under 1024 bits"), lines


def sign_small_key(msg, pem):
    """python3-dkim signs with a small key when told its minimum is lower."""
    return dkim.DKIM(msg, minkey=512).sign(b"py", b"example.org", pem) + msg
