# The board's access token when config.json has none, or the server refused it: ThingsBoard
# provisioning with the config's key and secret, or thethings.iO activation; saved into
# config.json at once (a server provisions a name only once). The app loads this module for
# that call and unloads it after.
#
# ThingsBoard is asked for a token the board chose and keeps on flash until it is saved: a
# retry after a lost reply is refused (the name now exists), and the chosen token then finds
# the device that earlier try created.
import binascii
import os

from iotlink import config
from iotlink.errors import ConfigError, HTTPError, ProvisionError
from iotlink.files import read, write_atomic
from iotlink.thingsboard import ThingsBoard

CHOSEN = "token.chosen"  # the token this board asks ThingsBoard for, kept until it is saved


def obtain(cfg, path, timeout):
    # A new token, put into cfg and saved into the config file at path. One config.json would
    # refuse is never saved: the board would wait for a fixed file for ever.
    token = _request(cfg, timeout)
    checked = dict(cfg)
    checked["token"] = token
    try:
        config.check(checked)
    except ConfigError as e:
        raise ProvisionError("FAILURE", "the server's token is not usable: %s" % e)
    cfg["token"] = token
    try:
        config.save_token(token, path)
        print("provision: token saved to %s" % path)
    except (OSError, ConfigError) as e:
        print("provision: token NOT saved (%s); it lasts until the next reset" % e)
        return  # the chosen token stays on flash: the next boot finds its device with it
    try:
        os.remove(CHOSEN)
    except OSError:
        pass  # thethings.iO, or a token the server chose


def _request(cfg, timeout):
    cadata = config.ca_data(cfg)
    if cfg["platform"] == "thethings":
        from iotlink.thethings import TheThings

        print("provision: activating the thing with its activation code")
        return TheThings.activate(cfg["server"], cfg["activation_code"], timeout=timeout, cadata=cadata)
    prov = cfg["provision"]
    name = prov.get("device_name")
    chosen = _chosen()
    print("provision: asking the server for a token%s" % (" as '%s'" % name if name else ""))
    try:
        return ThingsBoard.provision(cfg["server"], name, prov["key"], prov["secret"], timeout=timeout,
                                     cadata=cadata, token=chosen)
    except ProvisionError:
        # Refused, perhaps because an earlier try created the device and only its reply was
        # lost: then the token that try chose works, and the device is ours.
        if not _works(cfg["server"], chosen, timeout, cadata):
            raise
        print("provision: the device was created by an earlier try")
        return chosen


def _chosen():
    # The token this board asks for, on flash before it is sent.
    try:
        token = read(CHOSEN).decode().strip()
        if token:
            return token
    except (OSError, UnicodeError):
        pass  # none chosen yet
    token = binascii.hexlify(os.urandom(10)).decode()
    write_atomic(CHOSEN, token.encode())
    return token


def _works(server, token, timeout, cadata):
    try:
        ThingsBoard(server, token, timeout=timeout, cadata=cadata).request_attributes(client_keys=["iotlink_version"])
    except HTTPError as e:
        if e.status in (401, 403):
            return False
        raise
    return True
