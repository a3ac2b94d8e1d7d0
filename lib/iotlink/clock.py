# Wall-clock time that can be trusted for client timestamps: set from a server (NTP, the HTTP
# Date header, or thethings.iO's date) before any timestamp is used. Until then now_ms() is None:
# before the clock is set, time.time() counts from power-up and would stamp data in 2000/1970.
# Setting it is clock_once.py's work, loaded only for that moment: the loop asks the time all
# the time and sets it once a day.
import time

# Seconds from 1970-01-01 to the port's epoch: 2000-01-01 on ESP32, 1970 on unix and rp2.
EPOCH_OFFSET = 946684800 if time.gmtime(0)[0] == 2000 else 0

_offset_ms = None  # server time minus local time, once synced


def local_ms():
    # Milliseconds since 1970 by the local clock (whatever it was set to).
    try:
        return time.time_ns() // 1000000 + EPOCH_OFFSET * 1000
    except AttributeError:
        return (time.time() + EPOCH_OFFSET) * 1000


def set_unix_ms(server_ms):
    # Trust this time from now on; also set the board's RTC where there is one.
    global _offset_ms
    _offset_ms = server_ms - local_ms()
    try:
        import machine

        t = time.gmtime(server_ms // 1000 - EPOCH_OFFSET)
        machine.RTC().datetime((t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0))
        _offset_ms = server_ms - local_ms()  # what remains if the RTC did not take it
    except (ImportError, AttributeError, OSError):
        pass


def synced():
    return _offset_ms is not None


def now_ms():
    # Unix time in ms, or None until a server has set the clock.
    if _offset_ms is None:
        return None
    return local_ms() + _offset_ms
