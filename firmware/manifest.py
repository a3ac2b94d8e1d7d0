# Freeze iotlink into an ESP32 image (ESP32_GENERIC and its OTA variant). From a micropython
# checkout with ESP-IDF 5.x:
#   make -C mpy-cross
#   make -C ports/esp32 BOARD=ESP32_GENERIC BOARD_VARIANT=OTA FROZEN_MANIFEST=/abs/path/firmware/manifest.py
# The port's manifest comes first so the networking modules (requests, ntptime, mip) stay frozen.
include("$(PORT_DIR)/boards/manifest.py")
package("iotlink", base_path="../lib")
