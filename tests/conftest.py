import os
import subprocess
import sys

import pytest
from support import REPO, run_mp

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


@pytest.fixture(scope="session")
def installed_tool(tmp_path_factory):
    """The tool as a user installs it: the sdist built, the wheel built from it, and the wheel
    pip-installed (its dependencies from the package index) into a fresh virtual environment
    that sees neither this checkout nor the test environment. -> that environment's bin folder.
    Made once for the session: a minute at most, mostly pip (seconds with its cache warm)."""
    root = tmp_path_factory.mktemp("installed")
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(root / "dist"), str(REPO)],
                   check=True, capture_output=True)
    wheel = next((root / "dist").glob("iotlink_tools-*.whl"))
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, capture_output=True)
    bin_dir = root / "venv" / "bin"
    subprocess.run([str(bin_dir / "pip"), "install", "--quiet", "--disable-pip-version-check", str(wheel)],
                   check=True, capture_output=True)
    return bin_dir
