"""A scripted TCP server for the replies no well-behaved server sends: huge, truncated, silent."""

from __future__ import annotations

import socket
import threading


class RawServer:
    """Accepts connections on loopback; answers each request with `reply` bytes then closes.

    reply=None: accept and never answer (a server that hangs). With close=False the
    connection stays open after the reply, as a server ignoring `Connection: close` would.
    """

    def __init__(self, reply: bytes | None, close: bool = True):
        self.reply = reply
        self.close = close
        self.requests: list[bytes] = []
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self._open: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._open.append(conn)
            conn.settimeout(5)
            try:
                data = self._read_request(conn)
                self.requests.append(data)
                if self.reply is not None:
                    conn.sendall(self.reply)
                    if self.close:
                        conn.close()
            except OSError:
                pass

    @staticmethod
    def _read_request(conn: socket.socket) -> bytes:
        # The whole request, headers and Content-Length body: replying earlier would reset it.
        data = b""
        while b"\r\n\r\n" not in data:
            part = conn.recv(4096)
            if not part:
                return data
            data += part
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            part = conn.recv(4096)
            if not part:
                break
            body += part
        return head + b"\r\n\r\n" + body

    def stop(self):
        self._stop.set()
        self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked in the thread
        self._sock.close()
        for conn in self._open:
            conn.close()
