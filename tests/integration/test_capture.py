"""postel capture: SMTP in, Mailpit-compatible REST API out (docs/capture-api.md)."""
import base64
import email.policy
import os
import smtplib
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from email.message import EmailMessage

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from capture_harness import CaptureServer, capture_available  # noqa: E402
from fakemta import FakeMTA  # noqa: E402

why = capture_available()
pytestmark = pytest.mark.skipif(why is not None, reason=why or "")


@pytest.fixture
def cap(tmp_path):
    srv = CaptureServer(tmp_path).start()
    yield srv
    assert srv.stop() == 0


def make_message(subject="Hello", sender="Alice <alice@example.com>", to="bob@example.org",
                 text="plain body", html=None, attachment=None, cc=None):
    m = EmailMessage()
    m["From"] = sender
    m["To"] = to
    if cc:
        m["Cc"] = cc
    m["Subject"] = subject
    m["Date"] = "Tue, 24 Nov 2026 10:00:00 +0000"
    m["Message-ID"] = "<%s@example.com>" % abs(hash(subject))
    m.set_content(text)
    if html:
        m.add_alternative(html, subtype="html")
    if attachment:
        name, data, ctype = attachment
        main, sub = ctype.split("/")
        m.add_attachment(data, maintype=main, subtype=sub, filename=name)
    return m


def send(cap, msg, rcpts=None, login=True):
    with smtplib.SMTP("127.0.0.1", cap.smtp_port, timeout=10) as s:
        if login:
            s.login("anyone", "any password")
        s.send_message(msg, to_addrs=rcpts)


def test_smtp_accepts_anything(cap):
    with smtplib.SMTP("127.0.0.1", cap.smtp_port, timeout=10) as s:
        s.ehlo("client.test")
        s.starttls(context=harness.tls_context())
        s.ehlo("client.test")
        s.login("who@ever", "wrong-password")
        s.sendmail("x@anywhere.example", ["a@one.example", "b@two.example"],
                   b"Subject: t1\r\nFrom: x@anywhere.example\r\n\r\nbody\r\n")
    # unauthenticated, unknown domains: still accepted, never relayed
    send(cap, make_message("t2"), login=False)
    cap.wait_count(2)


def test_auth_file_limits_credentials(tmp_path):
    hashed = subprocess.run(["openssl", "passwd", "-6", "-salt", "capturetest", "hashed pw"],
                            capture_output=True, check=True).stdout.decode().strip()
    auth = tmp_path / "auth"
    auth.write_text("# test users\napp:plain pw\n\nci:%s\n" % hashed)
    cap = CaptureServer(tmp_path / "cap", extra_args=["--auth-file", str(auth)]).start()
    try:
        with smtplib.SMTP("127.0.0.1", cap.smtp_port, timeout=10) as s:
            s.ehlo("client.test")
            code, _ = s.mail("x@example.com")
            assert code == 530                      # AUTH is required now
        for user, pw in (("app", "wrong"), ("nobody", "plain pw"), ("ci", hashed)):
            with smtplib.SMTP("127.0.0.1", cap.smtp_port, timeout=10) as s:
                with pytest.raises(smtplib.SMTPAuthenticationError) as e:
                    s.login(user, pw)
                assert e.value.smtp_code == 535
        for user, pw in (("app", "plain pw"), ("ci", "hashed pw")):
            with smtplib.SMTP("127.0.0.1", cap.smtp_port, timeout=10) as s:
                s.login(user, pw)
                s.send_message(make_message("from " + user))
        cap.wait_count(2)
        assert sorted(m["Subject"] for m in cap.messages()["messages"]) == ["from app", "from ci"]
    finally:
        assert cap.stop() == 0
    for text in ("no colon here\n", "", ":nouser\n", "user:\n"):
        auth.write_text(text)
        p = subprocess.run([harness.POSTEL_BIN, "capture", "--auth-file", str(auth), "--data",
                            str(tmp_path / "d")], capture_output=True, timeout=10,
                           env=harness.clean_env())
        assert p.returncode == 64 and b"postel capture:" in p.stderr, (text, p.stderr)


def test_list_get_headers_raw_part(cap):
    pdf = b"%PDF-1.4 fake\x00\x01\x02"
    send(cap, make_message("Report", html="<p>Hi <b>there</b></p>", cc="Carol <carol@example.net>",
                           attachment=("report.pdf", pdf, "application/pdf")))
    cap.wait_count(1)
    lst = cap.messages()
    assert lst["total"] == 1 and lst["unread"] == 1 and lst["messages_count"] == 1
    s = lst["messages"][0]
    for key in ("ID", "MessageID", "Read", "From", "To", "Cc", "Bcc", "ReplyTo", "Subject",
                "Created", "Size", "Attachments", "Snippet", "Tags"):
        assert key in s, key
    assert s["Subject"] == "Report" and s["Read"] is False
    assert s["From"] == {"Name": "Alice", "Address": "alice@example.com"}
    assert s["To"] == [{"Name": "", "Address": "bob@example.org"}]
    assert s["Cc"][0]["Address"] == "carol@example.net"
    assert s["Attachments"] == 1 and s["Snippet"] == "plain body"
    mid = s["ID"]

    full = cap.json("GET", "/api/v1/message/" + mid)
    assert full["ID"] == mid and full["Text"].strip() == "plain body"
    assert "<b>there</b>" in full["HTML"]
    att = full["Attachments"][0]
    assert att["FileName"] == "report.pdf" and att["ContentType"] == "application/pdf"
    assert att["Size"] == len(pdf)
    # reading the message marks it read, as in Mailpit
    assert cap.messages()["unread"] == 0
    assert cap.json("GET", "/api/v1/message/latest")["ID"] == mid

    hdrs = cap.json("GET", "/api/v1/message/%s/headers" % mid)
    assert hdrs["Subject"] == ["Report"]
    assert hdrs["From"] == ["Alice <alice@example.com>"]

    status, _, raw = cap.get("/api/v1/message/%s/raw" % mid)
    assert status == 200 and "Subject: Report" in raw

    status, headers, data = cap.get("/api/v1/message/%s/part/%s" % (mid, att["PartID"]), raw=True)
    assert status == 200 and data == pdf
    assert headers["Content-Type"].startswith("application/pdf")
    status, _, _ = cap.get("/api/v1/message/%s/part/9.9" % mid)
    assert status == 404
    status, _, _ = cap.get("/api/v1/message/nope")
    assert status == 404


def test_search(cap):
    send(cap, make_message("Invoice 42", sender="Shop <shop@store.example>", text="pay now"))
    send(cap, make_message("Welcome aboard", sender="Team <team@app.example>", text="hello friend",
                           attachment=("a.txt", b"x", "text/plain")))
    send(cap, make_message("Password reset", sender="Team <team@app.example>", to="zed@example.org",
                           text="click the link"))
    cap.wait_count(3)

    def subjects(q):
        return sorted(m["Subject"] for m in cap.messages(q)["messages"])

    assert subjects("from:team@app.example") == ["Password reset", "Welcome aboard"]
    assert subjects("subject:invoice") == ["Invoice 42"]
    assert subjects('subject:"password reset"') == ["Password reset"]
    assert subjects("to:zed") == ["Password reset"]
    assert subjects("has:attachment") == ["Welcome aboard"]
    assert subjects("friend") == ["Welcome aboard"]
    assert subjects("-from:team") == ["Invoice 42"]
    assert subjects("is:unread from:shop") == ["Invoice 42"]
    assert subjects("after:2000-01-01") == ["Invoice 42", "Password reset", "Welcome aboard"]
    assert subjects("before:2000-01-01") == []
    res = cap.messages("from:team")
    assert res["messages_count"] == 2 and res["total"] == 3
    cap.json("GET", "/api/v1/message/" + res["messages"][0]["ID"])
    assert len(cap.messages("is:read")["messages"]) == 1


def test_errors_are_json(cap):
    send(cap, make_message("keep me"))
    cap.wait_count(1)
    for path in ("/api/v1/message/ffffffffffffffff", "/api/v1/message/nope/headers",
                 "/api/v1/message/ffffffffffffffff/raw", "/api/v1/message/latest/part/7",
                 "/api/v1/nothing-here"):
        status, headers, body = cap.get(path)
        assert status == 404, path
        assert headers["Content-Type"].startswith("application/json"), path
        assert isinstance(body, dict) and body["Error"], (path, body)
    bad = {"before:yesterday": "before:", "after:2024-13-01": "after:",
           "after:2024-01-01x": "after:", "larger:huge": "larger:", "smaller:-5": "smaller:",
           'subject:"open quote': "quote", "is:starred": "is:", "has:wings": "has:",
           " ".join("w%d" % i for i in range(40)): "too many"}
    for q, word in bad.items():
        for method in ("GET", "DELETE"):
            status, headers, body = cap.request(method, "/api/v1/search?query=" +
                                                urllib.parse.quote(q))
            assert status == 400, (method, q, status, body)
            assert headers["Content-Type"].startswith("application/json")
            assert word in body["Error"], (q, body)
    # DELETE by search needs a query; nothing was deleted by any of the above
    status, _, body = cap.request("DELETE", "/api/v1/search?query=")
    assert status == 400 and "query" in body["Error"]
    assert cap.messages()["total"] == 1
    # good edge cases still work
    assert len(cap.messages("larger:10 smaller:2M after:2020-02-29")["messages"]) == 1
    assert cap.messages("larger:1.5M")["messages"] == []
    # non-API paths keep plain-text errors
    status, headers, _ = cap.get("/no-such-page")
    assert status == 404 and headers["Content-Type"].startswith("text/plain")


def test_mark_read_and_delete(cap):
    for i in range(4):
        send(cap, make_message("m%d" % i))
    cap.wait_count(4)
    ids = [m["ID"] for m in cap.messages()["messages"]]
    status, _, _ = cap.request("PUT", "/api/v1/messages", {"IDs": ids[:2], "Read": True})
    assert status == 200
    assert cap.messages()["unread"] == 2
    status, _, _ = cap.request("PUT", "/api/v1/messages", {"Read": True})
    assert cap.messages()["unread"] == 0
    cap.request("PUT", "/api/v1/messages", {"IDs": [ids[0]], "Read": False})
    assert cap.messages()["unread"] == 1

    status, _, _ = cap.request("DELETE", "/api/v1/messages", {"IDs": [ids[0]]})
    assert status == 200
    assert [m["ID"] for m in cap.messages()["messages"]] == ids[1:]
    status, _, _ = cap.request("DELETE", "/api/v1/search?query=subject:m2")
    assert status == 200
    assert sorted(m["Subject"] for m in cap.messages()["messages"]) == ["m0", "m1"]
    status, _, _ = cap.request("DELETE", "/api/v1/messages")
    assert status == 200 and cap.messages()["total"] == 0
    status, _, _ = cap.request("PUT", "/api/v1/messages", {"IDs": []})
    assert status == 400


def test_mark_read_by_search_and_tags(cap):
    send(cap, make_message("alpha one", sender="a@one.example"))
    send(cap, make_message("beta two", sender="b@two.example"))
    send(cap, make_message("alpha three", sender="c@three.example"))
    cap.wait_count(3)
    status, _, _ = cap.request("PUT", "/api/v1/messages", {"Read": True, "Search": "subject:alpha"})
    assert status == 200
    assert sorted(m["Subject"] for m in cap.messages("is:read")["messages"]) == \
        ["alpha one", "alpha three"]
    status, _, body = cap.request("PUT", "/api/v1/messages", {"Read": True, "Search": "is:maybe"})
    assert status == 400 and "is:" in body["Error"]
    assert cap.messages()["unread"] == 1
    assert cap.json("GET", "/api/v1/tags") == []


def test_checks_verify_dkim_and_dmarc_with_dns(tmp_path):
    import dkim
    from dnsresponder import DNSResponder
    key = tmp_path / "dkim.key"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    der = subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    dns = DNSResponder({
        "sel._domainkey.example.com": [{"TXT": "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()}],
        "_dmarc.example.com": [{"TXT": "v=DMARC1; p=reject"}],
    }).start()
    cap = CaptureServer(tmp_path / "cap", extra_args=["--dns", "127.0.0.1:%d" % dns.port]).start()
    try:
        raw = make_message("Signed", text="signed body\n").as_bytes().replace(b"\n", b"\r\n")
        sig = dkim.sign(raw, b"sel", b"example.com", key.read_bytes(),
                        include_headers=[b"from", b"to", b"subject", b"date"])
        good = sig + raw
        bad = good.replace(b"signed body", b"forged body")
        for data in (good, bad):
            with smtplib.SMTP("127.0.0.1", cap.smtp_port, timeout=10) as s:
                s.sendmail("alice@example.com", ["bob@example.org"], data)
        cap.wait_count(2)
        by_body = {}
        for m in cap.messages()["messages"]:
            text = cap.json("GET", "/api/v1/message/" + m["ID"])["Text"]
            by_body["forged" if "forged" in text else "signed"] = m["ID"]
        a = cap.json("GET", "/api/v1/message/%s/auth-check" % by_body["signed"])
        assert a["Verified"] is True
        assert a["DKIM"]["Signatures"][0]["Result"] == "pass", a
        assert a["DKIM"]["Signatures"][0]["Domain"] == "example.com"
        assert a["DMARC"]["Result"] == "pass" and a["DMARC"]["Policy"] == "reject", a
        c = cap.json("GET", "/api/v1/message/%s/checks" % by_body["forged"])["Auth"]
        assert c["DKIM"]["Signatures"][0]["Result"] == "fail", c
        assert "body" in c["DKIM"]["Signatures"][0]["Reason"]
        assert c["DMARC"]["Result"] == "fail" and c["DMARC"]["Policy"] == "reject", c
        assert any(q[0].startswith("sel._domainkey.example.com") for q in dns.queries)
    finally:
        assert cap.stop() == 0
        dns.stop()
    # without --dns nothing is looked up and the signature is listed unverified
    cap = CaptureServer(tmp_path / "cap").start()
    try:
        a = cap.json("GET", "/api/v1/message/%s/auth-check" % by_body["signed"])
        assert "Verified" not in a and "not verified" in a["DKIM"]["Signatures"][0]["Result"]
    finally:
        assert cap.stop() == 0


def test_send_api(cap):
    body = {
        "From": {"Email": "app@example.com", "Name": "App"},
        "To": [{"Email": "user@example.org", "Name": "Ünïcode User"}],
        "Cc": [{"Email": "cc@example.org"}],
        "Subject": "Sent over HTTP ✓",
        "Text": "text part",
        "HTML": "<p>html part</p>",
        "Attachments": [{"Content": base64.b64encode(b"hello").decode(), "Filename": "h.txt",
                         "ContentType": "text/plain"}],
        "Headers": {"X-Test": "yes"},
    }
    res = cap.json("POST", "/api/v1/send", body)
    assert res["ID"]
    m = cap.json("GET", "/api/v1/message/" + res["ID"])
    assert m["Subject"] == "Sent over HTTP ✓"
    assert m["To"][0] == {"Name": "Ünïcode User", "Address": "user@example.org"}
    assert m["Text"].strip() == "text part" and "html part" in m["HTML"]
    assert m["Attachments"][0]["FileName"] == "h.txt"
    assert cap.json("GET", "/api/v1/message/%s/headers" % res["ID"])["X-Test"] == ["yes"]
    status, _, _ = cap.request("POST", "/api/v1/send", {"To": []})
    assert status == 400


def test_release_to_second_instance(tmp_path):
    target = CaptureServer(tmp_path / "target", name="target").start()
    cap = CaptureServer(tmp_path / "cap", relay="127.0.0.1:%d" % target.smtp_port,
                        extra_args=["--relay-insecure"]).start()
    try:
        assert cap.json("GET", "/api/v1/webui")["MessageRelay"]["Enabled"] is True
        send(cap, make_message("Release me", text="line\n.starts with a dot"))
        cap.wait_count(1)
        mid = cap.messages()["messages"][0]["ID"]
        status, _, body = cap.request("POST", "/api/v1/message/%s/release" % mid,
                                      {"To": ["real@example.net"]})
        assert status == 200, body
        target.wait_count(1)
        got = target.messages()["messages"][0]
        assert got["Subject"] == "Release me"
        raw = target.get("/api/v1/message/%s/raw" % got["ID"])[2]
        assert "Delivered-To: real@example.net" in raw
        assert "\n.starts with a dot" in raw.replace("\r\n", "\n")
        assert cap.messages()["total"] == 1  # the original stays
    finally:
        assert cap.stop() == 0
        assert target.stop() == 0


def make_certs(d):
    """A CA and a certificate for DNS:localhost signed by it, plus a
    self-signed one for localhost; returns their paths."""
    d = str(d)
    os.makedirs(d, exist_ok=True)

    def ossl(*args):
        subprocess.run(["openssl"] + list(args), check=True, capture_output=True, cwd=d)

    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Test CA",
         "-keyout", "ca.key", "-out", "ca.pem", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "leaf.key",
         "-out", "leaf.csr")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost\n")
    ossl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "leaf.pem")
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost", "-keyout", "self.key", "-out", "self.pem")
    return {k: os.path.join(d, k) for k in ("ca.pem", "leaf.pem", "leaf.key", "self.pem",
                                             "self.key")}


def server_ctx(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def release(cap, to):
    mid = cap.messages()["messages"][0]["ID"]
    return cap.request("POST", "/api/v1/message/%s/release" % mid, {"To": to})


def test_release_starttls_auth_with_verified_certificate(tmp_path):
    certs = make_certs(tmp_path / "certs")
    mta = FakeMTA("127.0.0.1")
    mta.tls = server_ctx(certs["leaf.pem"], certs["leaf.key"])
    mta.auth = {"relayuser": "s3cret pass"}
    mta.auth_required = True
    mta.start()
    # the CA is trusted through OpenSSL's SSL_CERT_FILE; the name checked is "localhost"
    cap = CaptureServer(tmp_path / "cap", relay="localhost:%d" % mta.port,
                        extra_args=["--relay-user", "relayuser", "--relay-tls", "require"],
                        env={"POSTEL_RELAY_PASSWORD": "s3cret pass",
                             "SSL_CERT_FILE": certs["ca.pem"]}).start()
    try:
        send(cap, make_message("Release over TLS"))
        cap.wait_count(1)
        status, _, body = release(cap, ["real@example.net", "second@example.net"])
        assert status == 200, body
        got = mta.wait_messages(1)
        assert len(got) == 1
        m = got[0]
        assert m.tls is True and m.auth_user == "relayuser"
        assert m.sender == "alice@example.com"
        assert m.rcpt_addrs == ["real@example.net", "second@example.net"]
        assert b"Subject: Release over TLS" in m.data
        assert b"Delivered-To:" not in m.data.split(b"\r\n\r\n")[0]
        assert not any(c.startswith("AUTH") and "s3cret" in c for c in mta.commands)
        # a wrong password: the relay's reply comes back as 502
        mta.auth = {"relayuser": "another"}
        status, _, body = release(cap, ["real@example.net"])
        assert status == 502 and "535" in str(body), body
        assert len(mta.messages) == 1
    finally:
        assert cap.stop() == 0
        mta.stop()


def test_release_certificate_checked(tmp_path):
    certs = make_certs(tmp_path / "certs")
    mta = FakeMTA("127.0.0.1")
    mta.tls = server_ctx(certs["self.pem"], certs["self.key"])
    mta.start()
    cap = CaptureServer(tmp_path / "cap", relay="localhost:%d" % mta.port).start()
    try:
        send(cap, make_message("Untrusted relay"))
        cap.wait_count(1)
        status, _, body = release(cap, ["real@example.net"])
        assert status == 502 and "not trusted" in str(body) and "--relay-insecure" in str(body), body
        assert mta.messages == []
    finally:
        assert cap.stop() == 0
    cap = CaptureServer(tmp_path / "cap", relay="localhost:%d" % mta.port,
                        extra_args=["--relay-insecure"]).start()
    try:
        status, _, body = release(cap, ["real@example.net"])
        assert status == 200, body
        assert mta.wait_messages(1)[0].tls is True
    finally:
        assert cap.stop() == 0
        mta.stop()


def test_release_tls_modes_and_auth_login(tmp_path):
    mta = FakeMTA("127.0.0.1").start()          # no STARTTLS, no AUTH
    cap = CaptureServer(tmp_path / "req", relay="127.0.0.1:%d" % mta.port,
                        extra_args=["--relay-tls", "require"]).start()
    try:
        send(cap, make_message("Needs TLS"))
        cap.wait_count(1)
        status, _, body = release(cap, ["real@example.net"])
        assert status == 502 and "STARTTLS" in str(body), body
        assert mta.messages == []
    finally:
        assert cap.stop() == 0
    # default mode: plain text when STARTTLS is not offered; AUTH LOGIN only
    # offered, allowed without TLS because the relay is on loopback
    mta.auth = {"u": "p"}
    mta.offered = lambda: list(mta.ehlo) + ["AUTH LOGIN"]
    cap = CaptureServer(tmp_path / "plain", relay="127.0.0.1:%d" % mta.port,
                        extra_args=["--relay-user", "u"], env={"POSTEL_RELAY_PASSWORD": "p"}).start()
    try:
        send(cap, make_message("Plain relay"))
        cap.wait_count(1)
        status, _, body = release(cap, ["real@example.net"])
        assert status == 200, body
        m = mta.wait_messages(1)[0]
        assert m.tls is False and m.auth_user == "u"
        assert any(c.upper().startswith("AUTH LOGIN") for c in mta.commands)
    finally:
        assert cap.stop() == 0
        mta.stop()
    # implicit TLS (smtps) to a second capture instance's --smtps listener
    smtps_port = harness.free_port()
    target = CaptureServer(tmp_path / "target", name="target",
                           extra_args=["--smtps", "127.0.0.1:%d" % smtps_port]).start()
    cap = CaptureServer(tmp_path / "smtps", relay="127.0.0.1:%d" % smtps_port,
                        extra_args=["--relay-tls", "smtps", "--relay-insecure"]).start()
    try:
        send(cap, make_message("Over smtps"))
        cap.wait_count(1)
        status, _, body = release(cap, ["real@example.net"])
        assert status == 200, body
        target.wait_count(1)
        assert target.messages()["messages"][0]["Subject"] == "Over smtps"
        assert "with ESMTPS" in target.get("/api/v1/message/latest/raw")[2]
    finally:
        assert cap.stop() == 0
        assert target.stop() == 0


def test_release_bad_requests(tmp_path):
    cap = CaptureServer(tmp_path, relay="127.0.0.1:9").start()
    try:
        send(cap, make_message("x"))
        cap.wait_count(1)
        for to in (["a b@example.net"], ["<a@example.net>"], ["noat"], [""], [], [1],
                   ["a@example.net\r\nRCPT TO:<evil@example.net>"]):
            status, _, body = release(cap, to)
            assert status == 400, (to, status, body)
        status, _, body = cap.request("POST", "/api/v1/message/%s/release" % ("f" * 16),
                                      {"To": ["a@example.net"]})
        assert status == 404
        status, _, body = release(cap, ["a@example.net"])   # nothing listens on port 9
        assert status == 502 and "cannot connect" in str(body), body
    finally:
        assert cap.stop() == 0


def test_release_options_checked(tmp_path):
    base = [harness.POSTEL_BIN, "capture", "--data", str(tmp_path / "d")]
    for extra, env in ((["--relay", "nohostport"], {}),
                       (["--relay", "127.0.0.1:25", "--relay-tls", "maybe"], {}),
                       (["--relay", "127.0.0.1:25", "--relay-user", "u"], {}),
                       (["--relay-user", "u"], {"POSTEL_RELAY_PASSWORD": "p"})):
        e = harness.clean_env()
        e.pop("POSTEL_RELAY_PASSWORD", None)
        e.update(env)
        p = subprocess.run(base + extra, capture_output=True, timeout=10, env=e)
        assert p.returncode == 64, (extra, p.returncode, p.stderr)
        assert b"postel capture:" in p.stderr


def test_release_not_configured(cap):
    send(cap, make_message("x"))
    cap.wait_count(1)
    mid = cap.messages()["messages"][0]["ID"]
    status, _, _ = cap.request("POST", "/api/v1/message/%s/release" % mid, {"To": ["a@b.example"]})
    assert status == 400


def test_info_and_webui(cap):
    msg = make_message("info")
    send(cap, msg)
    cap.wait_count(1)
    info = cap.json("GET", "/api/v1/info")
    assert info["Messages"] == 1 and info["Unread"] == 1 and "Version" in info
    assert info["RuntimeStats"]["SMTPAccepted"] == 1
    # the size as sent (no event-stream client: the message was not parsed
    # on arrival, only counted)
    sent = len(msg.as_bytes(policy=email.policy.SMTP))
    assert abs(info["RuntimeStats"]["SMTPAcceptedSize"] - sent) <= 2, (info["RuntimeStats"], sent)
    webui = cap.json("GET", "/api/v1/webui")
    assert webui["MessageRelay"]["Enabled"] is False


def test_sse_event_on_arrival(cap):
    sock = socket.create_connection(("127.0.0.1", cap.http_port), timeout=10)
    sock.sendall(b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(4096)
    assert b"text/event-stream" in buf
    sender = threading.Timer(0.2, lambda: send(cap, make_message("Live one")))
    sender.start()
    deadline = time.time() + 10
    while b"event: new" not in buf and time.time() < deadline:
        buf += sock.recv(4096)
    sock.close()
    sender.join(10)
    assert b"event: new" in buf and b"Live one" in buf


def test_max_prunes_oldest(tmp_path):
    cap = CaptureServer(tmp_path, max_messages=3).start()
    try:
        for i in range(5):
            send(cap, make_message("n%d" % i))
        cap.wait_count(3)
        assert [m["Subject"] for m in cap.messages()["messages"]] == ["n4", "n3", "n2"]
    finally:
        assert cap.stop() == 0


def test_restart_keeps_messages(tmp_path):
    cap = CaptureServer(tmp_path).start()
    send(cap, make_message("Persistent"))
    cap.wait_count(1)
    mid = cap.messages()["messages"][0]["ID"]
    assert cap.stop() == 0
    cap.start()
    try:
        msgs = cap.messages()["messages"]
        assert [(m["ID"], m["Subject"]) for m in msgs] == [(mid, "Persistent")]
    finally:
        assert cap.stop() == 0


def test_large_message_kept_in_the_index_byte_for_byte(tmp_path):
    """Capture keeps messages inside index.db: an 8 MB message comes back
    from the raw endpoint byte for byte, also after a restart, and its
    space is given back when it is deleted."""
    cap = CaptureServer(tmp_path).start()
    try:
        payload = os.urandom(6 * 1024 * 1024)
        msg = make_message("Big one", attachment=("blob.bin", payload, "application/octet-stream"))
        sent = msg.as_bytes(policy=email.policy.SMTP)
        with smtplib.SMTP("127.0.0.1", cap.smtp_port, timeout=30) as c:
            c.sendmail("alice@example.com", ["bob@example.org"], sent)
        cap.wait_count(1)
        mid = cap.messages()["messages"][0]["ID"]
        status, _, raw = cap.get("/api/v1/message/%s/raw" % mid, raw=True)
        assert status == 200
        assert raw.endswith(sent) and len(raw) - len(sent) < 1000  # our trace fields on top
        # no file per message: the content is in the index
        data_dir = cap.data_dir
        files = [f for d, _, fs in os.walk(os.path.join(data_dir, "mail")) for f in fs]
        assert files == [], files
        assert cap.stop() == 0
        cap.start()
        status, _, again = cap.get("/api/v1/message/%s/raw" % mid, raw=True)
        assert status == 200 and again == raw
        status, _, _ = cap.request("DELETE", "/api/v1/messages", {"IDs": [mid]})
        assert status == 200
        assert cap.get("/api/v1/message/%s/raw" % mid)[0] == 404
        con = sqlite3.connect(os.path.join(data_dir, "index.db"))
        assert con.execute("SELECT count(*) FROM message_blobs").fetchone()[0] == 0
        con.close()
    finally:
        assert cap.stop() == 0


def test_html_view_is_sandboxed(cap):
    html = ('<html><head><title>t</title></head><body><script>alert(1)</script>'
            '<img src="cid:logo@x" alt="logo"><img src="https://tracker.example/p.gif" alt="">'
            '<form action="https://x.example"><input></form></body></html>')
    m = make_message("Scripted", html=html)
    m.get_payload()[1].add_related(b"\x89PNG\r\n\x1a\nfake", maintype="image", subtype="png",
                                   cid="<logo@x>")
    send(cap, m)
    cap.wait_count(1)
    mid = cap.messages()["messages"][0]["ID"]
    status, headers, body = cap.get("/view/%s.html" % mid)
    assert status == 200
    csp = headers["Content-Security-Policy"]
    assert "script-src 'none'" in csp and "sandbox" in csp and "allow-scripts" not in csp
    assert "img-src data:;" in csp  # remote images blocked by default
    assert "data:image/png;base64," in body and "cid:logo@x" not in body
    _, headers, _ = cap.get("/view/%s.html?remote=1" % mid)
    assert "https:" in headers["Content-Security-Policy"]
    # API responses and parts never run in the UI's origin
    _, headers, _ = cap.get("/api/v1/message/%s/raw" % mid)
    assert "sandbox" in headers["Content-Security-Policy"]
    checks = cap.json("GET", "/api/v1/message/%s/checks" % mid)
    slugs = {w["Slug"] for w in checks["HTML"]["Warnings"]}
    assert {"script", "form"} <= slugs
    assert any(link["URL"] == "https://tracker.example/p.gif" for link in checks["Links"]["Links"])
    assert checks["Size"]["OK"] is True and checks["Size"]["Limit"] == 25 * 1024 * 1024
    assert "Score" in checks["Spam"] and isinstance(checks["Spam"]["Rules"], list)
    sa = cap.json("GET", "/api/v1/message/%s/sa-check" % mid)
    assert "IsSpam" in sa and "Score" in sa


def test_malformed_and_binary_messages(cap):
    raw = (b"From: =?koi8-r?B?8NLJ18XU?= <x@example.com>\r\nSubject: =?bogus?Q?=FF=FE?=\r\n"
           b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n"
           b"Content-Type: text/plain; charset=windows-1252\r\n\r\ncaf\xe9 \x00 nul\r\n"
           b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           b"!!!not base64###\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>unclosed <b>html"
           b"\r\n")  # no final boundary
    with smtplib.SMTP("127.0.0.1", cap.smtp_port, timeout=10) as s:
        s.sendmail("x@example.com", ["y@example.com"], raw)
    cap.wait_count(1)
    mid = cap.messages()["messages"][0]["ID"]
    m = cap.json("GET", "/api/v1/message/" + mid)
    assert "café" in m["Text"]
    assert m["From"]["Name"] == "Привет"
    for path in ("headers", "raw", "checks", "part/2", "part/3"):
        status, _, _ = cap.get("/api/v1/message/%s/%s" % (mid, path))
        assert status == 200, path
    assert cap.get("/view/%s.html" % mid)[0] == 200


def raw_http(cap, data):
    s = socket.create_connection(("127.0.0.1", cap.http_port), timeout=10)
    s.sendall(data)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except socket.timeout:
        pass
    s.close()
    return out


def test_bad_http_requests(cap):
    assert raw_http(cap, b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert raw_http(cap, b"GET / HTTP/2.0\r\n\r\n").startswith(b"HTTP/1.1 505")
    assert raw_http(cap, b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 414")
    many = b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(100)) + b"\r\n"
    assert raw_http(cap, many).startswith(b"HTTP/1.1 431")
    assert raw_http(cap, b"POST /api/v1/send HTTP/1.1\r\nContent-Length: 999999999999\r\n\r\n"
                    ).startswith(b"HTTP/1.1 413")
    assert raw_http(cap, b"POST /api/v1/send HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                         b"Content-Length: 3\r\n\r\nabc").startswith(b"HTTP/1.1 400")
    assert raw_http(cap, b"POST /api/v1/send HTTP/1.1\r\nContent-Length: 5\r\n\r\n{bad}"
                    ).startswith(b"HTTP/1.1 400")
    assert raw_http(cap, b"DELETE /api/v1/info HTTP/1.1\r\nConnection: close\r\n\r\n"
                    ).startswith(b"HTTP/1.1 405")
    # pipelined requests on one connection are answered in order
    out = raw_http(cap, b"GET /livez HTTP/1.1\r\n\r\nGET /readyz HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert out.count(b"HTTP/1.1 200") == 2
    assert cap.get("/livez")[0] == 200


def test_ui_served_with_csp(cap):
    status, headers, body = cap.get("/")
    assert status == 200 and "<title>postel capture</title>" in body
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    for asset in ("/app.js", "/style.css"):
        assert cap.get(asset)[0] == 200


def chromium():
    for path in ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"):
        if os.access(path, os.X_OK):
            return path
    return None


@pytest.mark.skipif(chromium() is None, reason="chromium not installed (apt-get install -y chromium)")
def test_ui_in_headless_chromium(cap, tmp_path):
    send(cap, make_message("Shown in the browser", html="<p>rendered</p>"))
    cap.wait_count(1)
    # ?live=0: no event stream, so the virtual time budget can end
    args = [chromium(), "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--no-first-run", "--virtual-time-budget=5000",
            "--user-data-dir=%s" % (tmp_path / "chrome"), "--dump-dom", cap.base + "/?live=0"]
    p = subprocess.run(args, capture_output=True, timeout=90)
    dom = p.stdout.decode("utf-8", "replace")
    assert "Shown in the browser" in dom, p.stderr.decode("utf-8", "replace")[-2000:]
    assert 'class="unread"' in dom
