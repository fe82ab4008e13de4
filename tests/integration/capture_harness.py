"""A `postel capture` process on free loopback ports, for the capture tests."""
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import harness


class CaptureServer:
    def __init__(self, tmpdir, name="capture", max_messages=None, relay=None, extra_args=(),
                 env=None):
        self.dir = str(tmpdir)
        os.makedirs(self.dir, exist_ok=True)
        self.data_dir = os.path.join(self.dir, name + "-data")
        self.log_path = os.path.join(self.dir, name + ".log")
        self.smtp_port = harness.free_port()
        self.http_port = harness.free_port()
        self.max = max_messages
        self.relay = relay
        self.extra_args = list(extra_args)
        self.extra_env = dict(env or {})
        self.proc = None
        self.base = "http://127.0.0.1:%d" % self.http_port

    def args(self):
        a = [harness.POSTEL_BIN, "capture", "--smtp", "127.0.0.1:%d" % self.smtp_port,
             "--http", "127.0.0.1:%d" % self.http_port, "--data", self.data_dir]
        if self.max is not None:
            a += ["--max", str(self.max)]
        if self.relay:
            a += ["--relay", self.relay]
        return a + self.extra_args

    def start(self):
        self.log = open(self.log_path, "ab")
        env = harness.clean_env()
        env.update(self.extra_env)
        self.proc = subprocess.Popen(self.args(), stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env, cwd=self.dir)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("postel capture exited: " + self.log_text()[-2000:])
            if harness.port_accepts(self.smtp_port) and harness.port_accepts(self.http_port):
                return self
            time.sleep(0.05)
        raise RuntimeError("postel capture did not start: " + self.log_text()[-2000:])

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("postel capture did not stop within 5 s")
        self.log.close()
        return rc

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    # ---- HTTP
    def request(self, method, path, body=None, raw=False, headers=None):
        data = None
        hdrs = dict(headers or {})
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                payload = r.read()
                return r.status, dict(r.headers), payload if raw else _decode(r, payload)
        except urllib.error.HTTPError as e:
            payload = e.read()
            if "json" in e.headers.get("Content-Type", ""):
                return e.code, dict(e.headers), json.loads(payload)
            return e.code, dict(e.headers), payload.decode("utf-8", "replace")

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def json(self, method, path, body=None):
        status, _, data = self.request(method, path, body)
        assert status == 200, (status, data)
        return data

    def messages(self, query=None):
        if query is None:
            return self.json("GET", "/api/v1/messages")
        return self.json("GET", "/api/v1/search?query=" + urllib.parse.quote(query))

    def wait_count(self, n, timeout=5):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.messages()["total"] == n:
                return
            time.sleep(0.05)
        raise AssertionError("expected %d messages, have %d" % (n, self.messages()["total"]))


def _decode(resp, payload):
    ct = resp.headers.get("Content-Type", "")
    if "json" in ct:
        return json.loads(payload)
    return payload.decode("utf-8", "replace")


def capture_available():
    """None, or why `postel capture` cannot run (binary built without it)."""
    try:
        p = subprocess.run([harness.POSTEL_BIN, "capture", "--help"], capture_output=True,
                           timeout=10, env=harness.clean_env())
    except OSError as e:
        return str(e)
    if p.returncode != 0:
        return "this postel binary has no 'capture' command"
    return None
