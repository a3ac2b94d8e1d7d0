# Every exception iotlink raises. None of them ever carries the access token.


class IotlinkError(Exception):
    pass


class HTTPError(IotlinkError):
    # The server answered with a status that is not a success.
    def __init__(self, status, message=""):
        super().__init__("HTTP %d %s" % (status, message))
        self.status = status
        self.message = message


class Timeout(IotlinkError):
    # Connect, TLS handshake or a read did not finish within the timeout.
    pass


class ConnectionFailed(IotlinkError):
    # The server could not be reached or dropped the connection (the message has the errno).
    pass


class ProtocolError(IotlinkError):
    # The reply was not what the API promises: too large, truncated, not JSON, wrong shape.
    pass


class ProvisionError(IotlinkError):
    # Provisioning or activation was refused; `status` is the server's status word.
    def __init__(self, status, message=""):
        super().__init__("%s %s" % (status, message))
        self.status = status
        self.message = message


class TLSError(IotlinkError):
    # The TLS handshake failed, e.g. the server's certificate did not verify against the CA.
    pass


class ConfigError(IotlinkError):
    # config.json is missing, not JSON, or a key is wrong (named, never its value).
    pass


class WifiError(IotlinkError):
    # The Wi-Fi station did not join its network in time, or the access point refused it.
    pass


class RpcError(IotlinkError):
    # An RPC request the dispatcher cannot run: becomes the reply {"error": message}.
    pass


class UpdateFailed(IotlinkError):
    # An update was not applied (the reason goes to the server as fw_error/sw_error), e.g. its
    # package did not verify, or is not a tar archive iotlink unpacks.
    pass
