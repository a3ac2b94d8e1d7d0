# The board's access token when config.json has none, or the server refused it: ThingsBoard
# provisioning with the config's key and secret, or thethings.iO activation; saved into
# config.json at once (a server provisions a name only once). The app loads this module for
# that call (obtain at start-up, renew after a refused token) and unloads it after.
#
# ThingsBoard is asked for a token the board chose and keeps on flash until it is saved: a
# retry after a lost reply is refused (the name now exists), and the chosen token then finds
# the device that earlier try created.
import binascii
import os

from iotlink import config, unload
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
    from iotlink import config_once  # the checks and the save: loaded once the request is over

    try:
        try:
            config_once.check(checked)
        except ConfigError as e:
            raise ProvisionError("FAILURE", "the server's token is not usable: %s" % e)
        cfg["token"] = token
        try:
            config_once.save_token(token, path)
        except (OSError, ConfigError) as e:
            print("provision: token NOT saved (%s); it lasts until the next reset" % e)
            return  # the chosen token stays on flash: the next boot finds its device with it
    finally:
        unload("config_once")
    print("provision: token saved to %s" % path)
    try:
        os.remove(CHOSEN)
    except OSError:
        pass  # thethings.iO, or a token the server chose


def renew(app):
    # The server refused the App's token (the device was deleted, its credentials changed): the
    # provisioning keys ask for a new one. Refused again, app.recover() waits long between tries.
    print("server: token refused; provisioning again")
    obtain(app.cfg, app.path, app.timeout_s)
    app.client.use_token(app.cfg["token"])
    app.token_refused = False


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
