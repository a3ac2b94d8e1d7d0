"""The devserver against hostile clients: web pages of other sites (cross-site requests, DNS
rebinding), paths out of the static folder, and bodies that are huge, malformed, chunked or slow.
Every request here is raw HTTP, so the bytes on the wire are exactly the ones a browser or an
attacker would send."""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import subprocess
import time

import pytest
from support import IOTLINK

from iotlink_tools.devserver import DevServer, page
from iotlink_tools.devserver.web import KEPT_BODY, MAX_BODY
from iotlink_tools.rest import multipart

CREDENTIALS = {"username": "tenant@thingsboard.org", "password": "tenant"}
TABLES = ("devices", "device_profiles", "telemetry", "attributes", "rpc_requests", "ota_packages", "tt_values")
TIMEOUT_S = 5  # any answer here comes at once: a test that waits this long has found a hang


def send(server, method, path, body=b"", headers=None, port=None):
    """One request on its own connection: (status, headers, body). A Host in `headers`
    replaces the one http.client would send."""
    conn = http.client.HTTPConnection("127.0.0.1", port or server.port, timeout=TIMEOUT_S)
    try:
        conn.request(method, path, body, headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def raw(server, data: bytes, read_all=True) -> bytes:
    """Send bytes as they are; what the server answers until it closes (or the first answer)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT_S) as sock:
        sock.sendall(data)
        if read_all:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if not read_all and b"\r\n\r\n" in answer:
                break
        return answer


def statuses(answer: bytes) -> list[int]:
    return [int(code) for code in re.findall(rb"^HTTP/1\.[01] (\d{3})", answer, re.M)]


def snapshot(server) -> dict:
    """Everything a request could change: every table, the API keys."""
    state = {table: [tuple(row) for row in server.sql(f"SELECT * FROM {table}")] for table in TABLES}
    return {**state, "api_keys": sorted(server.rest_api.api_keys)}


def login(server) -> str:
    status, _, body = send(server, "POST", "/api/auth/login", json.dumps(CREDENTIALS).encode(),
                           {"Content-Type": "application/json"})
    assert status == 200
    return json.loads(body)["token"]


@pytest.fixture
def target(server, device):
    """A device with a package waiting for its file, and the REST writes that could change them
    (path, JSON body), each one harmful if it went through: "json" ones, and "text" ones, whose
    body ThingsBoard reads as a String and its Python client sends as text/plain."""
    pkg = server.add_package("fw", "1.0")
    dev = device["id"]
    rpc = {"method": "setGpio", "params": {"pin": "23", "value": 1}, "persistent": True}
    text = [
        (f"/api/plugins/telemetry/DEVICE/{dev}/SHARED_SCOPE", {"fw_url": "http://evil.example/fw.bin"}),
        (f"/api/plugins/telemetry/DEVICE/{dev}/attributes/SHARED_SCOPE", {"fw_url": "http://evil.example/"}),
        (f"/api/plugins/telemetry/DEVICE/{dev}/timeseries/ANY", {"temperature": 99}),
        (f"/api/rpc/twoway/{dev}", rpc),
        (f"/api/plugins/rpc/oneway/{dev}", rpc),
    ]
    json_only = [
        ("/api/device", {"name": "evil"}),
        ("/api/device-with-credentials", {"device": {"name": "evil-2"},
                                          "credentials": {"credentialsType": "ACCESS_TOKEN",
                                                          "credentialsId": "EVIL"}}),
        ("/api/device", {"id": {"entityType": "DEVICE", "id": dev}, "name": "test-device", "firmwareId": pkg}),
        ("/api/deviceProfile", {"name": "evil"}),
        ("/api/otaPackage", {"title": "evil", "version": "1", "type": "FIRMWARE"}),
        ("/api/apiKey", {"description": "evil"}),
    ]
    return {"device": device, "package": pkg, "json": json_only, "text": text, "writes": text + json_only}


# ---- 1. cross-site requests and DNS rebinding ------------------------------------------------------

SIMPLE_TYPES = ["text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                None]  # the bodies a page of any site may send without asking (None: a Blob without type)


@pytest.mark.parametrize("ctype", SIMPLE_TYPES)
def test_login_answers_no_token_to_a_body_a_foreign_page_may_send(server, ctype):
    headers = {"Content-Type": ctype} if ctype else {}
    for path, body in (("/api/auth/login", CREDENTIALS), ("/api/auth/token", {"refreshToken": "x"})):
        status, _, reply = send(server, "POST", path, json.dumps(body).encode(), headers)
        assert status == 415 and b"token" not in reply.lower()


@pytest.mark.parametrize("ctype", SIMPLE_TYPES)
def test_rest_writes_take_only_json_bodies(server, target, ctype):
    token = login(server)
    before = snapshot(server)
    writes = target["json"] if ctype and ctype.startswith("text/plain") else target["writes"]
    for path, body in writes:
        headers = {"X-Authorization": f"Bearer {token}", **({"Content-Type": ctype} if ctype else {})}
        status, _, _ = send(server, "POST", path, json.dumps(body).encode(), headers)
        assert status == 415, path
    assert snapshot(server) == before


def test_text_bodies_need_the_authorization_header_no_foreign_page_can_send(server, target):
    before = snapshot(server)
    for path, body in target["text"]:
        status, _, _ = send(server, "POST", path, json.dumps(body).encode(), {"Content-Type": "text/plain"})
        assert status == 401, path
    assert snapshot(server) == before
    path, body = target["text"][0]  # as ThingsBoard's Python client sends it
    headers = {"Content-Type": "text/plain", "X-Authorization": f"Bearer {login(server)}"}
    assert send(server, "POST", path, json.dumps(body).encode(), headers)[0] == 200
    assert server.shared_attributes("test-device") == body


def test_an_ota_upload_takes_only_a_multipart_body(server, target):
    token = login(server)
    before = snapshot(server)
    path = f"/api/otaPackage/{target['package']}?checksumAlgorithm=SHA256"
    upload = multipart({}, "file", "fw.bin", b"\x00evil", "application/octet-stream")
    for ctype in ("text/plain", "application/json", None):
        headers = {"X-Authorization": f"Bearer {token}", **({"Content-Type": ctype} if ctype else {})}
        assert send(server, "POST", path, upload.data, headers)[0] == 415
    assert snapshot(server) == before
    headers = {"X-Authorization": f"Bearer {token}", "Content-Type": upload.content_type}
    assert send(server, "POST", path, upload.data, headers)[0] == 200
    assert bytes(server.package(target["package"])["data"]) == b"\x00evil"


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1:1"])
def test_requests_from_another_origin_are_refused(server, target, origin):
    token = login(server)
    before = snapshot(server)
    json_headers = {"Content-Type": "application/json", "Origin": origin}
    for path, body in target["writes"]:
        status, _, _ = send(server, "POST", path, json.dumps(body).encode(),
                            {**json_headers, "X-Authorization": f"Bearer {token}"})
        assert status == 403, path
    status, _, reply = send(server, "POST", "/api/auth/login", json.dumps(CREDENTIALS).encode(), json_headers)
    assert status == 403 and b"token" not in reply
    for path in ("/", "/static/app.js", "/api/tenant/devices?pageSize=10&page=0"):
        assert send(server, "GET", path, headers={"Origin": origin, "X-Authorization": f"Bearer {token}"})[0] == 403
    assert snapshot(server) == before


def test_the_servers_own_origin_is_served(server, target):
    own = {"Origin": server.url, "Content-Type": "application/json"}
    status, _, reply = send(server, "POST", "/api/auth/login", json.dumps(CREDENTIALS).encode(), own)
    assert status == 200
    path, body = target["writes"][0]
    headers = {**own, "X-Authorization": f"Bearer {json.loads(reply)['token']}"}
    assert send(server, "POST", path, json.dumps(body).encode(), headers)[0] == 200
    assert server.shared_attributes("test-device") == body


@pytest.mark.parametrize("host", ["evil.example:{port}", "evil.example", "localhost.evil.example:{port}",
                                  "127.0.0.1.nip.io:{port}", "evil.localhost:{port}", "127.0.0.1:1@evil.example",
                                  "[::1]evil.example", ""])
def test_a_rebound_host_name_reaches_neither_page_nor_rest(server, target, host):
    host = host.format(port=server.port)
    token = login(server)
    before = snapshot(server)
    json_headers = {"Host": host, "Content-Type": "application/json"}
    status, _, reply = send(server, "POST", "/api/auth/login", json.dumps(CREDENTIALS).encode(), json_headers)
    assert status == 403 and b"token" not in reply
    for path, body in target["writes"]:
        status, _, _ = send(server, "POST", path, json.dumps(body).encode(),
                            {**json_headers, "X-Authorization": f"Bearer {token}"})
        assert status == 403, path
    for path in ("/", "/static/app.js", "/api/auth/user"):
        assert send(server, "GET", path, headers={"Host": host, "X-Authorization": f"Bearer {token}"})[0] == 403
    assert snapshot(server) == before


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST", "[::1]:{port}",
                                  "192.168.1.20:{port}"])
def test_ip_addresses_and_localhost_reach_the_page_and_rest(server, host):
    headers = {"Host": host.format(port=server.port), "Content-Type": "application/json"}
    assert send(server, "POST", "/api/auth/login", json.dumps(CREDENTIALS).encode(), headers)[0] == 200
    assert send(server, "GET", "/", headers=headers)[0] == 200


def test_devices_reach_their_api_by_any_host_name(server, device):
    """The device API's secret is the token in the path: a board may know the server by any name."""
    host = {"Host": f"iot.example.com:{server.port}", "Content-Type": "application/json"}
    assert send(server, "POST", "/api/v1/TEST_TOKEN/telemetry", b'{"t": 1}', host)[0] == 200
    assert server.latest_telemetry("test-device")["t"][1] == 1
    server.thethings.add_thing(token="THING")
    assert send(server, "POST", "/v2/things/THING", b'{"values": [{"key": "t", "value": 2}]}', host)[0] == 201


def test_an_allowed_host_name_reaches_the_page_and_rest():
    with DevServer(allowed_hosts=["DevBox.example"]) as srv:
        headers = {"Host": f"devbox.example:{srv.port}", "Content-Type": "application/json",
                   "Origin": f"http://devbox.example:{srv.port}"}
        assert send(srv, "POST", "/api/auth/login", json.dumps(CREDENTIALS).encode(), headers)[0] == 200
        assert send(srv, "GET", "/", headers={"Host": f"other.example:{srv.port}"})[0] == 403


def test_the_devserver_command_allows_the_hosts_it_is_given(tmp_path):
    proc = subprocess.Popen([IOTLINK, "devserver", "--http-port", "0", "--allow-host", "devbox.example",
                             "--allow-host", "pi.lan"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout:
            if "iotlink devserver on" in line:
                break
        port = int(re.search(r"https?://[\d.]+:(\d+)", line)[1])
        body = json.dumps(CREDENTIALS).encode()
        for host, status in (("devbox.example", 200), ("pi.lan", 200), ("evil.example", 403)):
            headers = {"Host": f"{host}:{port}", "Content-Type": "application/json"}
            assert send(None, "POST", "/api/auth/login", body, headers, port=port)[0] == status
    finally:
        proc.terminate()  # not SIGINT: a shell that starts the tests in the background ignores it
        proc.wait(10)


def test_a_preflight_is_never_granted(server):
    headers = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "content-type,x-authorization"}
    for path in ("/api/auth/login", "/api/rpc/twoway/x", "/api/v1/TOKEN/telemetry"):
        status, reply_headers, _ = send(server, "OPTIONS", path, headers=headers)
        assert status >= 400
        assert not [name for name in reply_headers if name.lower().startswith("access-control-")]


def test_device_routes_refuse_what_pages_of_other_sites_send(server, device):
    """A token everyone knows (the demo's) gives a page of another site nothing to do."""
    server.thethings.add_thing(token="THING")
    rpc_id = server.queue_rpc("test-device", "setGpio", {"pin": "23", "value": 1})
    before = snapshot(server)
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"},
                    {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "empty"},
                    {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"},
                    {"Host": f"evil.example:{server.port}", "Origin": f"http://evil.example:{server.port}"},
                    {"Host": f"evil.example:{server.port}", "Sec-Fetch-Site": "same-origin"}):
        headers = {**headers, "Content-Type": "text/plain"}
        for method, path, body in (("POST", "/api/v1/TEST_TOKEN/telemetry", b'{"forged": 1}'),
                                   ("POST", "/api/v1/TEST_TOKEN/attributes", b'{"gpio_pins": ["2"]}'),
                                   ("POST", f"/api/v1/TEST_TOKEN/rpc/{rpc_id}", b'{"forged": 1}'),
                                   ("GET", "/api/v1/TEST_TOKEN/rpc?timeout=500", b""),
                                   ("POST", "/v2/things/THING", b'{"values": [{"key": "forged", "value": 1}]}')):
            assert send(server, method, path, body, headers)[0] == 403, (path, headers)
    assert snapshot(server) == before
    assert server.rpc_status("test-device", rpc_id)["status"] == "QUEUED"


def test_a_link_from_another_site_opens_the_page_but_no_frame_shows_it(server):
    visit = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
    status, headers, _ = send(server, "GET", "/", headers=visit)
    assert status == 200 and headers["X-Frame-Options"] == "DENY"
    assert send(server, "GET", "/", headers={**visit, "Sec-Fetch-Dest": "iframe"})[0] == 403
    assert send(server, "GET", "/static/app.js", headers={"Sec-Fetch-Site": "none"})[0] == 200


def test_no_cors_requests_of_another_origin_change_nothing_in_a_browser(server, device, browser):
    rpc_id = server.queue_rpc("test-device", "setGpio", {"pin": "23", "value": 1})
    before = snapshot(server)
    browser.get(f"http://localhost:{server.port}/static/style.css")  # a page of another origin
    browser.set_script_timeout(10)
    browser.execute_async_script(
        "const [base, done] = arguments;"
        "const simple = (path, init) => fetch(base + path, {mode: 'no-cors', ...init}).catch(() => null);"
        "Promise.all(["
        " simple('/api/v1/TEST_TOKEN/telemetry', {method: 'POST', body: '{\"forged\": 1}'}),"
        " simple('/api/v1/TEST_TOKEN/rpc?timeout=500', {}),"
        f" simple('/api/auth/login', {{method: 'POST', body: JSON.stringify({json.dumps(CREDENTIALS)})}}),"
        "]).then(() => done(true));", server.url)
    arrived = [e for e in server.exchanges if e.path.startswith(("/api/v1/", "/api/auth/"))]
    assert len(arrived) == 3 and {e.status for e in arrived} == {403}
    assert snapshot(server) == before
    assert server.rpc_status("test-device", rpc_id)["status"] == "QUEUED"


def test_a_rebinding_page_in_a_browser_cannot_log_in(server, device, browser):
    """Chromium resolves *.localhost to this machine itself, as a rebound name would."""
    browser.get(f"http://rebound.localhost:{server.port}/")
    assert "data-device" not in browser.page_source
    browser.set_script_timeout(10)
    status = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/api/auth/login', {method: 'POST', headers: {'Content-Type': 'application/json'},"
        f" body: JSON.stringify({json.dumps(CREDENTIALS)})}}).then(r => done(r.status), e => done(String(e)));")
    assert status == 403


# ---- 2. files out of the static folder --------------------------------------------------------------

@pytest.mark.parametrize("name", ["%2Fetc%2Fpasswd", "%2fetc%2fpasswd", "..%2F..%2Fcore.py", "%2e%2e%2fpage.py",
                                  "%2E%2E%2F%2E%2E%2Fcore.py", "app.js%2F..%2F..%2Fcore.py",
                                  "style.css%2F..%2F..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
                                  "..%5Cpage.py", "x%5C..%5C..%5Cpage.py", "%2F", "."])
def test_no_file_out_of_the_static_folder_is_served(server, name):
    status, _, body = send(server, "GET", f"/static/{name}")
    assert status == 404 and b"root:" not in body and b"import" not in body


def test_absolute_and_dotted_paths_are_not_static_files(server):
    for path in ("/static//etc/passwd", "/static/../core.py", "/static/./app.js/../../page.py"):
        status, _, body = send(server, "GET", path)
        assert status == 404 and b"root:" not in body and b"import" not in body
    assert send(server, "GET", "/static/app.js")[0] == 200


def test_a_symlink_out_of_the_static_folder_is_not_followed(server, tmp_path, monkeypatch):
    static = tmp_path / "static"
    static.mkdir()
    (static / "app.js").write_text("// the page")
    (tmp_path / "secret.txt").write_text("host secret")
    (static / "leak.txt").symlink_to(tmp_path / "secret.txt")
    (static / "up").symlink_to(tmp_path)
    monkeypatch.setattr(page, "STATIC", static)
    assert send(server, "GET", "/static/app.js")[2] == b"// the page"
    for name in ("leak.txt", "up%2Fsecret.txt"):
        status, _, body = send(server, "GET", f"/static/{name}")
        assert status == 404 and b"host secret" not in body


# ---- 3. bodies: how much is read and kept --------------------------------------------------------------

def test_large_bodies_are_not_kept(server, device):
    big = json.dumps({"blob": "x" * (MAX_BODY - 100)}).encode()
    for path in ("/api/v1/TEST_TOKEN/attributes", "/api/v1/NO_SUCH_TOKEN/telemetry", "/nowhere"):
        for _ in range(3):
            send(server, "POST", path, big, {"Content-Type": "application/json"})
    assert len(server.exchanges) == 9
    assert all(len(e.body) == KEPT_BODY and e.length == len(big) for e in server.exchanges)


def test_the_exchange_log_keeps_the_newest_within_its_budget(server, device):
    server.exchanges.max_count = 5
    for n in range(12):
        send(server, "POST", "/api/v1/TEST_TOKEN/telemetry", b'{"n": %d}' % n, {"Content-Type": "application/json"})
    assert [e.json()["n"] for e in server.exchanges] == [7, 8, 9, 10, 11]
    server.exchanges.max_bytes = 3 * server.exchanges[-1].footprint
    send(server, "POST", "/api/v1/TEST_TOKEN/telemetry", b'{"n": 12}', {"Content-Type": "application/json"})
    assert [e.json()["n"] for e in server.exchanges] == [10, 11, 12]


def test_a_body_over_the_limit_is_refused_before_it_is_read(server, device):
    upload = "/api/otaPackage/00000000-0000-0000-0000-000000000000"
    for path, ctype, length in (("/api/v1/TEST_TOKEN/telemetry", "application/json", MAX_BODY + 1),
                                ("/v2/things/THING", "application/json", MAX_BODY + 1),
                                ("/api/auth/login", "application/json", MAX_BODY + 1),
                                ("/", "text/plain", MAX_BODY + 1),
                                (upload, "multipart/form-data; boundary=x", 60 * 1024 * 1024)):
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {length}\r\nExpect: 100-continue\r\n\r\n").encode()
        answer = raw(server, head, read_all=False)  # no body sent: only a refusal can come back
        assert statuses(answer) == [413], path
    assert server.telemetry("test-device") == []


def test_device_and_thethings_bodies_over_a_mebibyte_change_nothing(server, device):
    server.thethings.add_thing(token="THING")
    before = snapshot(server)
    value = "x" * MAX_BODY
    for path, body in (("/api/v1/TEST_TOKEN/telemetry", {"blob": value}),
                       ("/api/v1/TEST_TOKEN/attributes", {"blob": value}),
                       ("/v2/things/THING", {"values": [{"key": "blob", "value": value}]})):
        assert send(server, "POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"})[0] == 413
    assert snapshot(server) == before


def test_an_ota_upload_may_be_large_and_is_kept_whole_but_logged_short(server, device):
    token = login(server)
    pkg = server.add_package("big", "1.0")
    data = bytes(range(256)) * (12 * 1024)  # 3 MiB
    upload = multipart({}, "file", "fw.bin", data, "application/octet-stream")
    headers = {"X-Authorization": f"Bearer {token}", "Content-Type": upload.content_type}
    assert send(server, "POST", f"/api/otaPackage/{pkg}?checksumAlgorithm=SHA256", upload.data, headers)[0] == 200
    assert bytes(server.package(pkg)["data"]) == data
    logged = server.requests_to(f"/api/otaPackage/{pkg}")[0]
    assert len(logged.body) == KEPT_BODY and logged.length == len(upload.data)


def test_a_client_that_expects_100_continue_is_told_to_go_on_once_the_request_passes(server, device):
    body = b'{"t": 1}'
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT_S) as sock:
        sock.sendall(b"POST /api/v1/TEST_TOKEN/telemetry HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n"
                     % len(body))
        assert sock.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        assert statuses(sock.recv(4096)) == [200]
    assert server.latest_telemetry("test-device")["t"][1] == 1


def test_over_https_a_refused_body_is_swallowed_and_the_next_connection_served(tmp_path):
    from iotlink_lab.tlsutil import make_pki

    pki = make_pki(tmp_path)
    with DevServer(tls=(str(pki["cert"]), str(pki["key"]))) as srv:
        srv.add_device("d", "T")
        context = ssl.create_default_context(cafile=str(pki["ca"]))
        context.check_hostname = False
        for body, status in ((b"x" * (MAX_BODY + 1), 413), (b'{"t": 1}', 200)):
            conn = http.client.HTTPSConnection("127.0.0.1", srv.port, timeout=TIMEOUT_S, context=context)
            conn.request("POST", "/api/v1/T/telemetry", body, {"Content-Type": "application/json"})
            assert conn.getresponse().status == status
            conn.close()
        assert srv.latest_telemetry("d")["t"][1] == 1


@pytest.mark.parametrize("length", ["-1", "abc", "+5", "5, 5", "0x10", "99999999999999999999"])
def test_an_invalid_content_length_is_answered_at_once(server, device, length):
    head = (f"POST /api/v1/TEST_TOKEN/telemetry HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Length: {length}\r\n\r\n{{\"t\": 1}}").encode()
    answer = raw(server, head, read_all=False)
    assert statuses(answer) == [400]
    assert server.telemetry("test-device") == []


def test_two_different_content_lengths_are_refused(server, device):
    answer = raw(server, b"POST /api/v1/TEST_TOKEN/telemetry HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n"
                         b"Content-Length: 2\r\n\r\n{\"t\": 1}")
    assert statuses(answer) == [400] and server.telemetry("test-device") == []


def smuggled(token="TEST_TOKEN") -> bytes:
    body = b'{"smuggled": 1}'
    return (b"POST /api/v1/%s/telemetry HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (token.encode(), len(body), body))


def test_a_chunked_body_is_parsed_as_one(server, device):
    body = b'{"t": 1, "u": 2}'
    head = (b"POST /api/v1/TEST_TOKEN/telemetry HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    chunks = b"%x;ext=1\r\n%s\r\n%x\r\n%s\r\n0\r\nX-Trailer: 1\r\n\r\n" % (5, body[:5], len(body) - 5, body[5:])
    assert statuses(raw(server, head + chunks)) == [200]
    assert {k: v for _, k, v in server.telemetry("test-device")} == {"t": 1, "u": 2}


def test_a_request_inside_a_chunked_body_is_never_run(server, device):
    head = (b"POST /api/v1/TEST_TOKEN/attributes HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    inner = smuggled()
    for body in (inner,  # not chunked at all: read as chunks, it is malformed
                 b"%x\r\n%s\r\n0\r\n\r\n" % (len(inner), inner),  # one chunk holding a whole request
                 b"0\r\n\r\n" + b"%x\r\n%s\r\n" % (len(inner), inner)):  # a request after the last chunk
        raw(server, head + body)
    assert server.telemetry("test-device") == []
    assert not [e for e in server.exchanges if "/telemetry" in e.path]


@pytest.mark.parametrize("encoding", ["gzip", "gzip, chunked", "chunked, chunked"])
def test_other_transfer_encodings_are_refused_and_the_connection_closed(server, device, encoding):
    head = (f"POST /api/v1/TEST_TOKEN/attributes HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Transfer-Encoding: {encoding}\r\n\r\n").encode()
    answer = raw(server, head + smuggled())
    assert statuses(answer) == [501] and b"Connection: close" in answer
    assert server.telemetry("test-device") == []


def test_content_length_with_chunked_is_refused(server, device):
    head = (b"POST /api/v1/TEST_TOKEN/attributes HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert statuses(raw(server, head + smuggled())) == [400]
    assert server.telemetry("test-device") == []


def test_a_chunked_body_over_the_limit_is_refused(server, device):
    head = (b"POST /api/v1/TEST_TOKEN/telemetry HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    assert statuses(raw(server, head + b"%x\r\n" % (MAX_BODY + 1), read_all=False)) == [413]
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"x" * 64 * 1024)
    assert statuses(raw(server, head + chunk * (MAX_BODY // len(chunk) + 2) + b"0\r\n\r\n")) == [413]
    assert server.telemetry("test-device") == []


def test_a_client_that_goes_silent_is_dropped():
    with DevServer(read_timeout_s=0.5) as srv:
        srv.add_device("d", "T")
        for data in (b"POST /api/v1/T/telemetry HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n{\"t\":",
                     b"POST /api/v1/T/telemetry HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n{",
                     b"POST /api/v1/T/telemetry HTTP/1.1\r\nHost: x\r\n",
                     b""):  # idle, before any request
            with socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT_S) as sock:
                sock.sendall(data)
                assert sock.recv(4096) == b""  # closed by the server, long before TIMEOUT_S
        assert srv.telemetry("d") == []


def test_the_thethings_stream_log_is_bounded(server, monkeypatch):
    from iotlink_tools.devserver import thethings

    monkeypatch.setattr(thethings, "STREAM_LOG", (3, 1 << 20))
    tt = server.thethings
    tt.add_thing(token="THING")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT_S)
    conn.request("GET", "/v2/things/THING?keepAlive=50")
    resp = conn.getresponse()
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while resp.read1(1024) and tt.streamed("THING").count(b"{}") < 3 and time.monotonic() < deadline:
            pass
        assert len(tt.streamed("THING")) == 3 and tt.streamed("THING")[-1] == b"{}"
    finally:
        conn.close()
