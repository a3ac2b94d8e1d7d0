# Runs before main.py: finish or roll back an app update a power cut interrupted (ota.resume),
# then bring Wi-Fi up from config.json in bounded time (two attempts of 10 s at most; not in
# deep-sleep mode, whose wakes bring it up only to talk to the server). Never
# blocks for longer, never raises: without config or Wi-Fi, main.py reports the problem and
# keeps retrying.
import gc


def _resume_update():
    try:
        from iotlink import ota, unload

        ota.resume()
        unload("ota", "ota_swap")  # the loop loads the OTA code again when it has work for it
    except Exception as e:  # the journal stays for the next boot; the app that is there runs
        print("boot: update: %s" % e)


def _wifi_up():
    try:
        from iotlink import config, unload

        cfg = config.load()
        wifi = cfg.get("wifi")
        # A board in deep-sleep mode brings Wi-Fi up only on the wakes that talk to the server.
        if wifi and cfg.get("sleep", {}).get("mode") != "deep":
            from iotlink import net_once

            try:
                print("boot: wifi up, %s" % net_once.up(wifi, attempts=2, timeout_ms=10000))
            finally:
                unload("net_once")
    except Exception as e:  # boot.py must end; main.py says what is wrong and retries
        print("boot: %s" % e)


_resume_update()
_wifi_up()
del _resume_update, _wifi_up
# Before main.py imports the loop: what the steps above left behind goes now, so the loop's
# modules fill the heap from the bottom instead of around it.
gc.collect()
