# An example of the optional user module: copy it to the board's root as sensors.py and the
# firmware sends what read() returns with every telemetry, next to uptime_s and mem_free.
# read() must return a dict of name -> number/string/bool and should be quick (the watchdog
# keeps running). If it raises or returns something else, the board reports `sensor_error`
# and goes on.
import sys

import machine


def _chip_temperature():
    if sys.platform == "esp32":
        import esp32

        if hasattr(esp32, "mcu_temperature"):  # ESP32-S2/S3/C3...
            return esp32.mcu_temperature()
        return (esp32.raw_temperature() - 32) / 1.8  # the classic ESP32 reports Fahrenheit
    # RP2040 (and the virtual board): the internal sensor on ADC 4, 27 degC at 0.706 V.
    volts = machine.ADC(4).read_u16() * 3.3 / 65535
    return 27 - (volts - 0.706) / 0.001721


def read():
    return {"chip_temp": round(_chip_temperature(), 1)}
