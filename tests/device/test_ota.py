"""OTA end to end: a virtual board (micropython, tmp flash) updates itself from the devserver.

Each run of BOOT is one boot of the board: boot.py's resume(), then report_boot() and check()
with the shared attributes read from the server. A run ending with status 75 reset the board.
"""

import io
import json
import os
import shutil
import tarfile

import pytest
from support import REBOOT, REPO, boot, boot_until_idle, current, make_tar, script, states, tree, wire

from iotlink_lab.faultproxy import FaultProxy
from iotlink_tools.devserver.checksums import checksum
from iotlink_tools.devserver.ota import fail_chunk

DEAD_SERVER = "http://127.0.0.1:1"
KILLED = -9

OLD_APP = {"main.py": b"print('old app')\n", "lib/old.py": b"OLD = 1\n",
           "lib/iotlink/__init__.py": b"# old\n"}
NEW_APP = {"main.py": b"print('new app')\n", "lib/iotlink/__init__.py": b"# new\n",
           "lib/iotlink/app.py": b"# the new loop\n" * 300, "lib/new.py": b"NEW = 1\n"}
USER_FILES = {"config.json": b'{"token": "TEST_TOKEN"}', "sensors.py": b"def read():\n    return {}\n"}


def install(flash, files):
    for name, data in files.items():
        path = flash / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def after_resume(run):
    """The board's files right after resume() in that boot."""
    return next(r["after_resume"] for r in run.results if isinstance(r, dict) and "after_resume" in r)


def stored_states(server, prefix="fw"):
    return [v for _, _, v in server.telemetry("test-device", prefix + "_state")]


def chunk_requests(server, path="/firmware"):
    return [int(e.query["chunk"][0]) for e in server.requests_to(path, "GET")]


def offer(server, data, title="app", version="2.0", kind="FIRMWARE", algorithm="SHA256"):
    server.assign_package("test-device", server.add_package(title, version, data, kind, algorithm))


@pytest.fixture
def board(mp, device):
    install(mp.flash, {**OLD_APP, **USER_FILES, "boot.py": (REPO / "boot.py").read_bytes()})
    return mp


UPDATED = ["DOWNLOADING", "DOWNLOADED", "VERIFIED", "UPDATING", "UPDATED"]
# The named steps of NEW_APP's update with 4 KiB chunks (the tar is 10 KiB), in order: the
# running app downloads, verifies and journals it; at the next boot, boot.py swaps it in.
DOWNLOAD_STEPS = ["chunk 0", "chunk 1", "chunk 2", "verified", "journal", "reset"]
SWAP_STEPS = ["keep main.py", "keep lib", "move main.py", "move lib", "trial"]
UPDATE_STEPS = DOWNLOAD_STEPS + SWAP_STEPS


def steps(run):
    return [r for r in run.results if isinstance(r, str) and r != "idle"]


def test_tar_bundle_update_end_to_end(board, server):
    offer(server, make_tar(NEW_APP))
    first = boot(board, server)
    assert first.returncode == REBOOT
    assert steps(first) == DOWNLOAD_STEPS
    assert chunk_requests(server) == [0, 1, 2]
    assert all(e.query["size"] == ["4096"] and e.query["title"] == ["app"] and e.query["version"] == ["2.0"]
               for e in server.requests_to("/firmware"))
    assert tree(board.flash) == {**OLD_APP, **USER_FILES}  # nothing of the app moved yet

    second = boot(board, server)
    assert steps(second)[:len(SWAP_STEPS)] == SWAP_STEPS
    assert after_resume(second) == text({**NEW_APP, **USER_FILES})
    assert second.returncode == 0 and second.results[-1] == "idle"
    assert states(server) == UPDATED
    # Distinct timestamps: no state overwrote another. The first two are the server's own, set when
    # the package was assigned, as ThingsBoard's OTA state service does.
    assert stored_states(server) == ["QUEUED", "INITIATED"] + UPDATED
    assert current(server) == ("app", "2.0")
    assert not (board.flash / ".ota/old").exists()
    assert len(server.requests_to("/firmware")) == 3  # nothing downloaded again


def test_current_firmware_reported_at_every_start(board, server):
    for _ in range(2):
        assert boot(board, server).returncode == 0
    sent = [e.json() for e in server.requests_to("/telemetry", "POST")]
    assert sent == [{"current_fw_title": "iotlink", "current_fw_version": "0.1.0"}] * 2


def test_states_carry_increasing_client_timestamps_once_the_clock_is_set(board, server):
    offer(server, make_tar(NEW_APP))
    code = script(server)
    code = "from iotlink import clock\nclock.set_unix_ms(1700000000000)\n" + code
    assert board(code, check=False).returncode == REBOOT
    bodies = [e.json() for e in server.requests_to("/telemetry", "POST")]
    stamped = [b["ts"] for b in bodies if "fw_state" in b.get("values", {})]
    assert len(stamped) == 4 and stamped == sorted(set(stamped))


def test_gnu_tar_archive_with_long_names(board, server, tmp_path_factory):
    src = tmp_path_factory.mktemp("app")
    deep = "lib/" + "d" * 60 + "/" + "m" * 70 + ".py"  # longer than the 100-byte ustar name field
    files = {"main.py": b"print('gnu')\n", deep: b"X = 1\n"}
    install(src, files)
    import subprocess

    data = subprocess.run(["tar", "--format=gnu", "-cf", "-", "main.py", "lib/"], cwd=src,
                          capture_output=True, check=True).stdout
    offer(server, data)
    boot_until_idle(board, server)
    assert tree(board.flash) == {**files, **USER_FILES}
    assert states(server) == UPDATED


def test_software_package(board, server):
    offer(server, make_tar({"app/logic.py": b"RULE = 3\n"}), title="rules", version="7", kind="SOFTWARE")
    boot_until_idle(board, server)
    assert tree(board.flash) == {**OLD_APP, **USER_FILES, "app/logic.py": b"RULE = 3\n"}
    assert states(server, "sw") == UPDATED and states(server, "fw") == []
    assert current(server, "sw") == ("rules", "7")
    assert chunk_requests(server, "/software") == [0, 1, 2]


def test_same_version_as_a_number_is_no_update(board, server):
    offer(server, make_tar(NEW_APP), version="2")
    boot_until_idle(board, server)
    assert current(server) == ("app", "2")
    server.set_shared_attributes("test-device", {"fw_version": 2})  # REST API writes it as a number
    assert boot(board, server).returncode == 0
    assert len(server.requests_to("/firmware")) == 3


@pytest.mark.parametrize("algorithm", ["MD5", "SHA384", "CRC32", "MURMUR3_32", "MURMUR3_128"])
def test_every_algorithm_verifies_an_update(board, server, algorithm):
    offer(server, make_tar(NEW_APP), algorithm=algorithm)
    boot_until_idle(board, server)
    assert states(server) == UPDATED and tree(board.flash) == {**NEW_APP, **USER_FILES}


# ---- failures: the old app keeps running ---------------------------------------------------

def assert_failed(board, server, error_part, prefix="fw"):
    sent = wire(server, prefix)
    assert sent and sent[-1][0] == "FAILED", sent
    assert error_part in sent[-1][1], sent[-1][1]
    assert tree(board.flash) == {**OLD_APP, **USER_FILES}
    assert not (board.flash / ".ota/stage").exists()
    return sent


def test_wrong_checksum_is_never_applied(board, server):
    data = make_tar(NEW_APP)
    offer(server, data)
    server.set_shared_attributes("test-device", {"fw_checksum": checksum("SHA256", data + b"x")})
    run = boot(board, server)
    assert run.returncode == 0
    sent = assert_failed(board, server, "checksum mismatch")
    assert [s for s, _ in sent] == ["DOWNLOADING", "DOWNLOADED", "FAILED"]
    assert "verified" not in run.results


@pytest.mark.parametrize("delta", [100, -100])
def test_announced_size_differs_from_package(board, server, delta):
    data = make_tar(NEW_APP)
    offer(server, data)
    server.set_shared_attributes("test-device", {"fw_size": len(data) + delta})
    assert boot(board, server).returncode == 0
    assert_failed(board, server, "the announced size does not match")
    assert chunk_requests(server) == [0, 1, 2]  # refused at once, no retries


def test_truncated_chunks_are_retried_then_refused(board, server, device):
    offer(server, make_tar(NEW_APP))
    with FaultProxy(server.url, rate=1.0, faults=("truncate",), seed=3) as proxy:
        # Every reply through the proxy is cut: only the download and the states go that way.
        run = boot(board, server, url=proxy.url, report_boot=False)
    assert run.returncode == 0
    assert_failed(board, server, "chunk 0 failed 3 times: truncated")
    assert chunk_requests(server) == [0, 0, 0]


@pytest.mark.parametrize("chunk, status, error, requests", [
    (2, 500, "chunk 2 failed 3 times: HTTP 500", [0, 1, 2, 2, 2]),  # retried, then given up
    (1, 404, "chunk 1 refused: HTTP 404", [0, 1]),  # the package was unassigned: no retry
])
def test_server_error_mid_download(board, server, chunk, status, error, requests):
    offer(server, make_tar(NEW_APP))
    fail_chunk(server, "FIRMWARE", chunk, status=status)
    assert boot(board, server).returncode == 0
    assert_failed(board, server, error)
    assert chunk_requests(server) == requests


def test_transient_server_errors_are_retried(board, server):
    offer(server, make_tar(NEW_APP))
    fail_chunk(server, "FIRMWARE", 1, status=503, times=2)
    boot_until_idle(board, server)
    assert chunk_requests(server) == [0, 1, 1, 1, 2]
    assert states(server) == UPDATED


def test_failed_package_is_retried_at_most_three_times_per_run(board, server):
    data = make_tar(NEW_APP)
    offer(server, data)
    server.set_shared_attributes("test-device", {"fw_checksum": "00" * 32})
    code = script(server)
    code += "for _ in range(4):\n    up.check(shared['shared'])\n"
    assert board(code, check=False).returncode == 0
    assert states(server).count("FAILED") == 3 and len(server.requests_to("/firmware")) == 9


@pytest.mark.parametrize("attrs, error", [
    ({"fw_checksum_algorithm": "SHA1"}, "unknown checksum algorithm SHA1"),
    ({"fw_url": "https://example.com/fw.bin", "fw_checksum": None, "fw_size": None},
     "URL packages are not supported"),
    ({"fw_checksum": None}, "package announced without size and checksum"),
    ({"fw_size": -5}, "bad fw_size"),
])
def test_bad_announcements_are_refused_before_downloading(board, server, attrs, error):
    offer(server, make_tar(NEW_APP))
    server.set_shared_attributes("test-device", {k: v for k, v in attrs.items() if v is not None})
    server.delete_shared_attributes("test-device", [k for k, v in attrs.items() if v is None])
    assert boot(board, server).returncode == 0
    sent = wire(server)
    assert [s for s, _ in sent] == ["FAILED"] and error in sent[0][1]
    assert server.requests_to("/firmware") == []


def test_algorithm_the_port_lacks_is_refused(board, server):
    offer(server, make_tar(NEW_APP), algorithm="MD5")
    stub = "import sys\nclass _H:\n    sha256 = None\nsys.modules['hashlib'] = _H\n"
    code = stub + script(server)
    assert board(code, check=False).returncode == 0
    assert_failed(board, server, "checksum algorithm MD5 not available on this port")
    assert server.requests_to("/firmware") == []


@pytest.mark.parametrize("name, error", [
    ("../escape.py", "unsafe path"),
    ("/etc/escape.py", "unsafe path"),
    ("lib/../../escape.py", "unsafe path"),
    ("config.json", "package may not contain config.json"),
    (".ota/state.json", "package may not contain .ota"),
    # FAT, the boards' file system, takes these for the names above: so does the board.
    ("CONFIG.JSON", "package may not contain CONFIG.JSON"),
    ("Config.json", "package may not contain Config.json"),
    ("config.json.", "package may not contain config.json."),
    (".OTA/state.json", "package may not contain .OTA"),
    # The update guard, and what each board keeps for itself.
    ("boot.py", "package may not contain boot.py"),
    ("Boot.PY", "package may not contain Boot.PY"),
    ("queue/head", "package may not contain queue"),
    ("token.chosen", "package may not contain token.chosen"),
    ("certs/ca.der", "package may not contain certs"),  # the CA file config.json names
])
def test_hostile_tar_members_are_refused(board, server, name, error):
    (board.flash / "config.json").write_text('{"token": "TEST_TOKEN", "ca": "/certs/ca.der"}')
    offer(server, make_tar({"main.py": b"print('evil')\n", name: b"EVIL = 1\n"}))
    assert boot(board, server).returncode == 0
    sent = wire(server)
    assert sent[-1][0] == "FAILED" and error in sent[-1][1], sent
    assert tree(board.flash) == {**OLD_APP, **USER_FILES, "config.json": (board.flash / "config.json").read_bytes()}
    assert (board.flash / "boot.py").read_bytes() == (REPO / "boot.py").read_bytes()
    assert not (board.flash / ".ota/stage").exists()
    assert not (board.flash.parent / "escape.py").exists()


def test_mpy_files_of_another_micropython_are_refused_before_the_swap(board, server):
    # Compiled for MicroPython with .mpy version 5: this one (version 6) cannot import them.
    app = {**NEW_APP, "lib/iotlink/app.mpy": b"M\x05\x00\x1f" + bytes(40)}
    offer(server, make_tar(app))
    run = boot(board, server)
    assert run.returncode == 0 and "journal" not in run.results  # no reset, nothing journaled
    assert_failed(board, server, "lib/iotlink/app.mpy is .mpy version 5, this MicroPython loads version 6")
    assert not (board.flash / ".ota/state.json").exists()  # no job ever written


def deep(levels):
    return "/".join(["d"] * levels)


def test_a_300_level_folder_fails_the_update_and_the_next_one_installs(board, server):
    offer(server, make_tar({"main.py": b"print('deep')\n", deep(300) + "/x.py": b"X = 1\n"}))
    assert boot(board, server).returncode == 0
    assert_failed(board, server, "path deeper than 16 levels in package: d/d/d/")
    offer(server, make_tar(NEW_APP), version="2.1")
    boot_until_idle(board, server)
    assert tree(board.flash) == {**NEW_APP, **USER_FILES} and states(server)[-1] == "UPDATED"


def test_any_depth_left_on_the_flash_is_removed(board, server):
    # A staging folder 300 levels deep (an older firmware unpacked one): boot.py removes it, and
    # so does the update code before it unpacks the next package.
    for folder in (".ota/stage", ".ota/old"):
        path = board.flash / folder / deep(300)
        path.mkdir(parents=True)
        (path / "x.py").write_text("X = 1\n")
    offer(server, make_tar(NEW_APP))
    boot_until_idle(board, server)
    assert tree(board.flash) == {**NEW_APP, **USER_FILES} and states(server) == UPDATED
    assert sorted(p.name for p in (board.flash / ".ota").iterdir()) == ["state.json"]
    shutil.copytree(board.flash / "lib", board.flash / ".ota/stage/lib")
    (board.flash / ".ota/stage" / deep(300)).mkdir(parents=True)
    board("from iotlink import ota_swap\nota_swap.rmtree('.ota/stage')")
    assert not (board.flash / ".ota/stage").exists()


def test_links_in_a_tar_are_refused(board, server):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("lib")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc"
        tar.addfile(info)
    offer(server, buf.getvalue())
    assert boot(board, server).returncode == 0
    assert_failed(board, server, "unsupported member lib")


def test_corrupt_tar_with_matching_checksum_is_refused(board, server):
    data = bytearray(make_tar(NEW_APP))
    data[148:156] = b"0000000\0"  # header checksum of the first member
    offer(server, bytes(data))
    assert boot(board, server).returncode == 0
    assert_failed(board, server, "header checksum")


def test_truncated_tar_with_matching_checksum_is_refused(board, server):
    offer(server, make_tar(NEW_APP)[:3000])
    assert boot(board, server).returncode == 0
    assert_failed(board, server, "package truncated")


# ---- power cuts and rollback -----------------------------------------------------------------

def text(files):
    return {name: data.decode() for name, data in files.items()}


def assert_whole(run):
    files = after_resume(run)
    assert files in (text({**OLD_APP, **USER_FILES}), text({**NEW_APP, **USER_FILES})), sorted(files)


@pytest.mark.parametrize("step", UPDATE_STEPS)
def test_power_cut_during_update(board, server, step):
    offer(server, make_tar(NEW_APP))
    cut = boot(board, server, kill=step)
    if step in SWAP_STEPS:  # at the next boot
        cut = boot(board, server, kill=step)
    assert cut.returncode == KILLED and cut.results[-1] == step
    runs = boot_until_idle(board, server)
    assert_whole(runs[0])
    assert tree(board.flash) == {**NEW_APP, **USER_FILES}
    assert states(server)[-1] == "UPDATED" and current(server) == ("app", "2.0")
    assert not (board.flash / ".ota/old").exists() and not (board.flash / ".ota/stage").exists()


def test_power_cut_while_confirming(board, server):
    offer(server, make_tar(NEW_APP))
    assert boot(board, server).returncode == REBOOT
    assert boot(board, server, kill="finished").returncode == KILLED
    boot_until_idle(board, server)
    assert tree(board.flash) == {**NEW_APP, **USER_FILES}
    assert states(server) == UPDATED
    assert not (board.flash / ".ota/old").exists()


def test_new_app_that_never_reaches_the_server_is_rolled_back(board, server):
    offer(server, make_tar(NEW_APP))
    assert boot(board, server).returncode == REBOOT
    trial = boot(board, server, url=DEAD_SERVER)  # the new app runs but cannot reach the server
    assert trial.results[-2:] == [{"reached": False}, "idle"]
    assert tree(board.flash) == {**NEW_APP, **USER_FILES}
    back = boot(board, server)  # the next boot finds the trial unconfirmed
    assert back.returncode == 0
    assert tree(board.flash) == {**OLD_APP, **USER_FILES}
    assert wire(server)[-1] == ("FAILED", "app 2.0 did not reach the server after a reboot: rolled back")
    assert current(server) == ("iotlink", "0.1.0")
    assert len(server.requests_to("/firmware")) == 3  # the refused package is not fetched again
    assert boot(board, server).returncode == 0 and len(server.requests_to("/firmware")) == 3


@pytest.mark.parametrize("files, why", [
    ({"main.py": b"def broken(:\n"}, "did not start (SyntaxError: invalid syntax)"),
    # lib/ replaced whole by one without the module main.py imports (as a lib/ without iotlink)
    ({"main.py": b"import old\nprint('new app')\n", "lib/new.py": b"NEW = 1\n"},
     "did not start (ImportError: no module named 'old')"),
    ({"main.py": b"raise OSError(5)\n"}, "did not start (OSError: [Errno 5] EIO)"),
    ({"main.py": b"print('done')\n"}, "ended before it reached the server"),
])
def test_a_new_app_that_cannot_start_is_rolled_back_by_boot_py(board, server, files, why):
    offer(server, make_tar(files))
    assert boot(board, server).returncode == REBOOT  # downloaded, verified, journaled
    trial = board("", args=["boot.py"], check=False)  # the board's next boot, as it runs boot.py
    assert trial.returncode == REBOOT  # reset by the guard: no human step
    back = boot(board, server)  # and the next: rolled back, the old app reports why
    assert back.returncode == 0 and back.results[-1] == "idle"
    assert after_resume(back) == text({**OLD_APP, **USER_FILES})
    assert wire(server)[-1] == ("FAILED", "app 2.0 %s: rolled back" % why)
    assert current(server) == ("iotlink", "0.1.0")
    assert not (board.flash / ".ota/old").exists() and not (board.flash / ".ota/stage").exists()


@pytest.mark.parametrize("step", ["rollback", "restore main.py", "restore lib", "finished"])
def test_power_cut_during_rollback(board, server, step):
    offer(server, make_tar(NEW_APP))
    assert boot(board, server).returncode == REBOOT
    boot(board, server, url=DEAD_SERVER)
    assert boot(board, server, kill=step, url=DEAD_SERVER).returncode == KILLED
    runs = boot_until_idle(board, server)
    assert after_resume(runs[0]) == text({**OLD_APP, **USER_FILES})
    assert tree(board.flash) == {**OLD_APP, **USER_FILES}
    assert wire(server)[-1][0] == "FAILED" and current(server) == ("iotlink", "0.1.0")


def test_next_package_after_a_rollback_installs(board, server):
    offer(server, make_tar(NEW_APP))
    assert boot(board, server).returncode == REBOOT
    boot(board, server, url=DEAD_SERVER)
    boot(board, server)  # rolled back
    offer(server, make_tar({"main.py": b"print('fixed')\n"}), version="2.1")
    boot_until_idle(board, server)
    assert tree(board.flash) == {**OLD_APP, **USER_FILES, "main.py": b"print('fixed')\n"}
    assert current(server) == ("app", "2.1") and states(server)[-1] == "UPDATED"


def test_second_update_replaces_what_the_first_installed(board, server):
    offer(server, make_tar(NEW_APP))
    boot_until_idle(board, server)
    offer(server, make_tar({"main.py": b"print('v3')\n", "lib/v3.py": b"V = 3\n"}), version="3.0")
    boot_until_idle(board, server)
    assert tree(board.flash) == {**USER_FILES, "main.py": b"print('v3')\n", "lib/v3.py": b"V = 3\n"}
    assert current(server) == ("app", "3.0")


def test_power_cut_while_writing_the_state_file_keeps_the_previous_state(board, server):
    offer(server, make_tar(NEW_APP))
    boot_until_idle(board, server)
    # A cut while the temporary state file was being written leaves it half-written.
    (board.flash / ".ota/state.json.tmp").write_text('{"run": {"fw": ["x"')
    assert boot(board, server).returncode == 0
    assert current(server) == ("app", "2.0")


# ---- ESP32 app images ------------------------------------------------------------------------

IMAGE = b"\xe9" + os.urandom(10_000)


def otadata(flash):
    return json.loads((flash / ".esp32/otadata.json").read_text())


def test_esp32_image_update_end_to_end(board, server):
    offer(server, IMAGE, title="micropython", version="1.29", algorithm="MURMUR3_128")
    first = boot(board, server)
    assert first.returncode == REBOOT
    assert [r for r in first.results if isinstance(r, str)] == [
        "chunk 0", "chunk 1", "chunk 2", "verified", "journal", "reset"]
    written = (board.flash / ".esp32/ota_1.bin").read_bytes()
    assert written[: len(IMAGE)] == IMAGE and set(written[len(IMAGE):]) == {0xFF}
    assert otadata(board.flash)["boot"] == "ota_1"
    assert tree(board.flash) == {**OLD_APP, **USER_FILES}  # the files are not the firmware

    assert boot(board, server).returncode == 0
    assert otadata(board.flash)["states"]["ota_1"] == "valid"
    assert states(server) == UPDATED and current(server) == ("micropython", "1.29")


def test_esp32_image_with_wrong_checksum_never_boots(board, server):
    offer(server, IMAGE, title="micropython", version="1.29")
    server.set_shared_attributes("test-device", {"fw_checksum": checksum("SHA256", IMAGE[:-1])})
    assert boot(board, server).returncode == 0
    assert wire(server)[-1][0] == "FAILED" and "checksum mismatch" in wire(server)[-1][1]
    assert not (board.flash / ".esp32/otadata.json").exists()  # boot partition never changed


def test_esp32_image_too_large_for_the_partition(board, server):
    offer(server, b"\xe9" + bytes(0x180000), title="micropython", version="1.29", algorithm="CRC32")
    assert boot(board, server).returncode == 0
    assert "does not fit the 1572864 byte partition" in wire(server)[-1][1]
    assert chunk_requests(server) == [0]


def test_esp32_image_not_confirmed_is_rolled_back_by_the_bootloader(board, server):
    offer(server, IMAGE, title="micropython", version="1.29")
    assert boot(board, server).returncode == REBOOT
    assert boot(board, server, url=DEAD_SERVER).returncode == 0  # never reached the server
    assert otadata(board.flash)["states"]["ota_1"] == "pending_verify"
    assert boot(board, server).returncode == 0  # the bootloader went back to ota_0
    assert otadata(board.flash)["boot"] == "ota_0"
    assert wire(server)[-1] == ("FAILED", "firmware micropython 1.29 did not start: rolled back to ota_0")
    assert current(server) == ("iotlink", "0.1.0")
    assert len(server.requests_to("/firmware")) == 3


def test_esp32_image_only_as_firmware(board, server):
    offer(server, IMAGE, title="micropython", version="1.29", kind="SOFTWARE")
    assert boot(board, server).returncode == 0
    assert wire(server, "sw")[-1] == ("FAILED", "an ESP32 app image can only be a firmware package")


def test_boot_py_finishes_an_interrupted_swap(board, server):
    offer(server, make_tar(NEW_APP))
    assert boot(board, server).returncode == REBOOT
    assert boot(board, server, kill="keep lib").returncode == KILLED  # main.py already moved out
    # boot.py as the board runs it: it finishes the swap, then runs the new app on trial, which
    # here prints and ends without reaching any server: the board resets.
    run = board("", args=["boot.py"], check=False)
    assert run.returncode == REBOOT and "new app" in run.stdout
    assert tree(board.flash) == {**NEW_APP, **USER_FILES}
    job = json.loads((board.flash / ".ota/state.json").read_text())["job"]
    assert job["phase"] == "trial" and job["boots"] == 1
    assert job["error"] == "ended before it reached the server"


# ---- the watchdog ----------------------------------------------------------------------------

SLOW_DOWNLOAD = """
import time
from iotlink import app, app_connect_once, app_once, config
cfg = config.load()
a = app.App(cfg)  # its timeouts fit wdt_ms; the watchdog itself starts below, for the download
app_connect_once.connect(a)
while a.start_tasks:
    a.step()
conn = a.client.transport
request = conn.open
def slow(method, url, *args, **kw):  # a slow network: each chunk takes 400 ms
    if "/firmware?" in url:
        time.sleep_ms(400)
    return request(method, url, *args, **kw)
conn.open = slow
a.feed = app_once.watchdog(cfg["wdt_ms"])
a.read_attributes()  # the package announced: downloaded, verified, journaled, reset
"""


def test_the_loop_feeds_its_watchdog_while_an_update_downloads(board, server):
    # The fake machine.WDT resets the board at the first call into machine after it expired:
    # here at the latest the update's own reset.
    (board.flash / "config.json").write_text(json.dumps({"server": server.url, "token": "TEST_TOKEN",
                                                         "wdt_ms": 1000, "interval_s": 60}))
    data = make_tar({**NEW_APP, "lib/data.bin": os.urandom(20000)})
    offer(server, data)
    run = board(SLOW_DOWNLOAD, check=False)
    assert run.returncode == REBOOT
    assert "machine: reset" in run.stdout and "WDT not fed" not in run.stdout, run.stdout
    assert json.loads((board.flash / ".ota/state.json").read_text())["job"]["phase"] == "swap"
    assert chunk_requests(server) == list(range(-(-len(data) // 4096)))  # 8 chunks: 3.2 s
