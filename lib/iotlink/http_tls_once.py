# The TLS context of an https connection, built once per connection (http_conn.tls_context
# loads this module for that moment only).


def context(cadata):
    # cadata (a CA certificate, PEM or DER): verify the server's chain and host name.
    # None: encrypt only, as the boards' `requests` always does.
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cadata:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=der(cadata))
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def der(cadata):
    # The first certificate of PEM data as DER (not every port's mbedTLS parses PEM).
    begin = cadata.find(b"-----BEGIN CERTIFICATE-----")
    if begin < 0:
        return cadata
    end = cadata.find(b"-----END", begin)
    import binascii

    return binascii.a2b_base64(cadata[begin + 27 : end])
