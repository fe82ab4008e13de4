"""postel capture's web UI in real headless Chromium (tests/browser/capture_ui.test.js).

The node script starts its own `postel capture` (POSTEL_BIN), sends mail
with smtplib and drives Debian's chromium through playwright-core; this
file runs it and checks its results.  Skipped only when chromium, node or
the npm packages are missing: `make deps` installs all three.
"""
import json
import os
import shutil
import struct
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from capture_harness import capture_available  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BROWSER_DIR = os.path.join(ROOT, "tests", "browser")
CHROMIUM = "/usr/bin/chromium"


def _missing():
    why = capture_available()
    if why:
        return why
    if not os.access(CHROMIUM, os.X_OK):
        return "chromium not installed (make deps)"
    if shutil.which("node") is None:
        return "node not installed (make deps)"
    if not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")):
        return "playwright-core not installed (make deps runs npm ci --prefix tests/browser)"
    return None


why = _missing()
pytestmark = pytest.mark.skipif(why is not None, reason=why or "")

# Every check the script makes; a renamed or dropped one fails here.
EXPECTED = [
    "message appears live without reload",
    "unread badge is 1",
    "unread badge counts 2",
    "tab title carries the unread count",
    "HTML iframe is sandboxed without scripts",
    "HTML tab renders the HTML part",
    "message script did not run",
    "opening marks read: unread badge 1",
    "text tab shows the plain part",
    "checks tab shows size, spam score, auth, HTML and links",
    "attachment downloads as invoice.bin",
    "downloaded bytes equal the sent attachment",
    "search subject:password lists only the reset mail",
    "search has:attachment is:read lists the opened order mail",
    "a bad query shows the server's reason",
    "delete from the message view removes it",
    "delete of the selected message",
    "deletion through the API disappears live",
    "delete all empties list and store",
    "no reload during the whole session",
    "no script errors in the UI",
    "dark mode: dark page background",
    "postel capture exits cleanly on SIGTERM",
]


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


def test_capture_ui_in_chromium():
    bin_dir = os.path.dirname(os.path.abspath(harness.POSTEL_BIN))
    base = bin_dir if os.path.basename(bin_dir).startswith("build") else os.path.join(ROOT, "build")
    out = os.path.join(base, "test-output", "browser")
    results_file = os.path.join(out, "results.json")
    if os.path.exists(results_file):
        os.unlink(results_file)
    env = harness.clean_env()
    env["POSTEL_BIN"] = os.path.abspath(harness.POSTEL_BIN)
    env["CHROMIUM"] = CHROMIUM
    p = subprocess.run(["node", os.path.join(BROWSER_DIR, "capture_ui.test.js"), "--out", out,
                        "--results", results_file], capture_output=True, timeout=240, env=env,
                       cwd=BROWSER_DIR)
    log = p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")
    print(log)
    assert os.path.exists(results_file), log[-4000:]
    with open(results_file) as f:
        res = json.load(f)
    failed = [c for c in res["checks"] if not c["ok"]]
    assert not failed, json.dumps(failed, indent=1) + "\n" + log[-4000:]
    names = {c["name"] for c in res["checks"]}
    assert set(EXPECTED) <= names, sorted(set(EXPECTED) - names)
    assert p.returncode == 0, log[-4000:]
    # screenshots are real images of the viewport sizes used
    shots = {os.path.basename(s): s for s in res["screenshots"]}
    for name in ("01-list-live.png", "02-html-tab.png", "03-text-tab.png", "05-parts-tab.png",
                 "06-search.png", "07-after-delete.png", "08-dark-mobile-list.png"):
        assert name in shots, sorted(shots)
        w, h = png_size(shots[name])
        assert (w, h) in ((1280, 800), (390, 844)), (name, w, h)
        assert os.path.getsize(shots[name]) > 5000, name
