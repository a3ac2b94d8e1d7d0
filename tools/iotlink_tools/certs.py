"""The CA certificate an https server is verified with: read on the host, checked, and kept as
DER, the form every port's mbedTLS parses and the smallest on a board's flash. The same bytes
go on the board (deploy/provision --ca) and into the host's own REST client."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from .errors import ToolError

ON_BOARD = "ca.der"  # where deploy puts it on the board's flash, and what config.json's "ca" names


def read_ca(path: Path) -> bytes:
    """The one certificate in a PEM or DER file, as DER; a ToolError for anything else."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ToolError(f"cannot read {path}: {exc.strerror}") from None
    try:
        if b"-----BEGIN" in data:
            certificates = x509.load_pem_x509_certificates(data)
        else:
            certificates = [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise ToolError(f"{path} holds no certificate (PEM or DER expected)") from None
    if len(certificates) != 1:
        # A board trusts exactly one certificate: a whole chain would leave it the server's own.
        raise ToolError(f"{path} holds {len(certificates)} certificates; a board trusts one: "
                        "keep only the root CA the server's chain leads to")
    return certificates[0].public_bytes(Encoding.DER)
