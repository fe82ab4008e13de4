"""Fixtures: postel servers on free loopback ports with temporary data dirs.

server          module-scoped standard server (accounts in harness.USERS,
                smtp + submission + submissions), shared by a test file
make_server     factory for function-scoped servers with their own config:
                make_server(config={...}, users=..., start=True)
Every server started through these is stopped with SIGTERM at teardown
(SIGKILL after 5 s), and teardown fails if it did not exit cleanly.  A
failing test's report carries the log of every server that was running.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402


def pytest_configure(config):
    if not os.access(harness.POSTEL_BIN, os.X_OK):
        raise pytest.UsageError("POSTEL_BIN %s is not executable (run make)" % harness.POSTEL_BIN)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and call.when in ("call", "setup"):
        for srv in list(harness.LIVE):
            rep.sections.append(("postel log %s (last 80 lines)" % srv.log_path, "\n".join(
                srv.log_text().splitlines()[-80:])))


def _stop_all(servers):
    errors = harness.stop_all(servers)
    if errors:
        pytest.fail("server shutdown: " + "; ".join(errors))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = harness.standard_server(tmp_path_factory.mktemp("postel"))
    yield srv
    _stop_all([srv])


@pytest.fixture(scope="module")
def module_server(tmp_path_factory):
    """Factory for module-scoped servers with their own configuration."""
    made = []

    def make(config=None, users=harness.USERS, start=True, **kw):
        srv = harness.standard_server(tmp_path_factory.mktemp("postel"), config, users=users,
                                      start=start, **kw)
        made.append(srv)
        return srv

    yield make
    _stop_all(made)


@pytest.fixture
def make_server(tmp_path):
    made = []

    def make(config=None, users=harness.USERS, start=True, **kw):
        srv = harness.standard_server(tmp_path / ("s%d" % len(made)), config, users=users,
                                      start=start, **kw)
        made.append(srv)
        return srv

    yield make
    _stop_all(made)


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory):
    """`postel serve` on the embedded development defaults in a fresh
    directory (fixed ports: skipped if another one is running)."""
    why = harness.DevServer.unavailable()
    if why:
        pytest.skip(why)
    srv = harness.DevServer(tmp_path_factory.mktemp("dev"))
    srv.start()
    yield srv
    _stop_all([srv])
