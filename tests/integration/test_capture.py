"""postel capture: SMTP in, Mailpit-compatible REST API out (docs/capture-api.md)."""
import base64
import os
import smtplib
import socket
import ssl
import sys
import threading
import time
from email.message import EmailMessage

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from capture_harness import CaptureServer, capture_available  # noqa: E402

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
    cap = CaptureServer(tmp_path / "cap", relay="127.0.0.1:%d" % target.smtp_port).start()
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


def test_release_not_configured(cap):
    send(cap, make_message("x"))
    cap.wait_count(1)
    mid = cap.messages()["messages"][0]["ID"]
    status, _, _ = cap.request("POST", "/api/v1/message/%s/release" % mid, {"To": ["a@b.example"]})
    assert status == 400


def test_info_and_webui(cap):
    send(cap, make_message("info"))
    cap.wait_count(1)
    info = cap.json("GET", "/api/v1/info")
    assert info["Messages"] == 1 and info["Unread"] == 1 and "Version" in info
    assert info["RuntimeStats"]["SMTPAccepted"] == 1
    webui = cap.json("GET", "/api/v1/webui")
    assert webui["MessageRelay"]["Enabled"] is False


def test_sse_event_on_arrival(cap):
    sock = socket.create_connection(("127.0.0.1", cap.http_port), timeout=10)
    sock.sendall(b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(4096)
    assert b"text/event-stream" in buf
    threading.Timer(0.2, lambda: send(cap, make_message("Live one"))).start()
    deadline = time.time() + 10
    while b"event: new" not in buf and time.time() < deadline:
        buf += sock.recv(4096)
    sock.close()
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
    import subprocess
    # ?live=0: no event stream, so the virtual time budget can end
    args = [chromium(), "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--no-first-run", "--virtual-time-budget=5000",
            "--user-data-dir=%s" % (tmp_path / "chrome"), "--dump-dom", cap.base + "/?live=0"]
    p = subprocess.run(args, capture_output=True, timeout=90)
    dom = p.stdout.decode("utf-8", "replace")
    assert "Shown in the browser" in dom, p.stderr.decode("utf-8", "replace")[-2000:]
    assert 'class="unread"' in dom
