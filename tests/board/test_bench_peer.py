"""The benchmark's peers and sink do what the figures say they do: the MQTT loops publish every
reading and answer RPCs through a real broker, the sink answers every request it reads."""

import shutil
import socket

import pytest

from iotlink_lab import bench_peer
from iotlink_lab.bench_raw import REPLY, SinkServer
from iotlink_tools.vboard import compiled_fakes

pytestmark = pytest.mark.slow  # the MicroPython peers against a real broker


def read_replies(sock: socket.socket, count: int) -> bytes:
    data = b""
    while data.count(REPLY) < count:
        part = sock.recv(4096)
        if not part:
            break
        data += part
    return data


def test_sink_answers_each_request_whole_and_keeps_http11_alive():
    with SinkServer() as sink:
        with socket.create_connection(("127.0.0.1", int(sink.url.rsplit(":", 1)[1]))) as s:
            # A body split from its head, then a second request in the same packet as the first's end.
            s.sendall(b"POST /a HTTP/1.1\r\nHost: x\r\nCONTENT-LENGTH: 10\r\n\r\n01234")
            s.sendall(b"56789POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
            assert read_replies(s, 2) == REPLY * 2
            s.sendall(b"GET /c HTTP/1.0\r\nHost: x\r\n\r\n")
            assert read_replies(s, 1) == REPLY
            assert s.recv(1) == b""  # HTTP/1.0: answered, then closed
        assert sink.requests == 3


@pytest.fixture(scope="module")
def peer_setup(tmp_path_factory):
    if shutil.which("mosquitto", path="/usr/sbin:/usr/bin") is None:
        pytest.skip("no mosquitto (make test installs it)")
    work = tmp_path_factory.mktemp("peer")
    return work, compiled_fakes(work / "fakes"), bench_peer.fetch_packages()


@pytest.mark.parametrize("name", bench_peer.MQTT_LOOPS)
def test_mqtt_peer_publishes_every_reading_and_answers_rpcs_through_the_broker(peer_setup, name):
    work, fakes, fetched = peer_setup
    run = bench_peer.loop_runs(name, 256, work, fakes, fetched, iterations=50)
    assert run.ok and run.delivered == 50
    # The host alternates setGpio (odd ids, value 1) and getGpio (even ids): both answer the
    # level pin 23 has, 1, on the answer topic of their own id.
    assert {1, 2} <= set(run.answers)
    assert all(answer == {"pin": "23", "value": 1} for answer in run.answers.values())


def test_naive_loop_posts_every_reading(peer_setup):
    work, fakes, fetched = peer_setup
    run = bench_peer.loop_runs("naive (requests.post, frozen)", 256, work, fakes, fetched, iterations=50)
    assert run.ok and run.delivered == 50
