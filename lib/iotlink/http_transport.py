# The transport a client gets, each loaded only when chosen: iotlink's own HTTP/1.1 connection
# (http_conn.py) when it should stay open or verify the server's certificate; else the frozen
# `requests`, one connection per request (http_oneshot.py). Both answer request() and open()
# with the same shapes, so http.py's helpers work on either.


def transport(server, timeout, keepalive, cadata):
    if keepalive or cadata:
        from iotlink.http_conn import Connection

        return Connection(server, timeout, cadata)
    from iotlink import http_oneshot

    return http_oneshot  # the module: request() and open()
