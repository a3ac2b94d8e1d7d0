import os

import pytest
from support import run_mp

from iotlink_lab.browser import CHROMEDRIVER, CHROMIUM, chromium
from iotlink_tools.devserver import DevServer


@pytest.fixture
def server():
    """A fresh devserver on a free loopback port. Its async cap is short so tests stay quick."""
    srv = DevServer(port=0, async_timeout_ms=3000).start()
    yield srv
    srv.stop()


@pytest.fixture
def device(server):
    return server.add_device("test-device", "TEST_TOKEN")


@pytest.fixture
def mp(tmp_path):
    """Run a script in micropython with tmp_path as the board's flash."""
    def run(code, **kw):
        return run_mp(code, tmp_path, **kw)
    run.flash = tmp_path
    return run


@pytest.fixture
def pty_board(tmp_path):
    """Start virtual boards on pseudo-terminals: pty_board("b1", wifi=...) -> PtyBoard, its flash
    tmp_path/b1 (empty: a board fresh from the factory). All are powered off after the test."""
    from iotlink_tools.vboard.ptyboard import PtyBoard

    started = []

    def start(name="board", **kw):
        board = PtyBoard(tmp_path / name, **kw).start()
        started.append(board)
        return board

    yield start
    for board in started:
        board.stop()


@pytest.fixture
def browser(tmp_path):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        if os.environ.get("CI"):
            pytest.fail("chromium/chromium-driver missing: `make test` installs them")
        pytest.skip("chromium/chromium-driver missing: `make test` installs them")
    driver = chromium(tmp_path / "chromium")
    yield driver
    driver.quit()
