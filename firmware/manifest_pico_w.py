# Freeze iotlink into a Raspberry Pi Pico W image. From a micropython checkout:
#   make -C mpy-cross
#   make -C ports/rp2 BOARD=RPI_PICO_W submodules
#   make -C ports/rp2 BOARD=RPI_PICO_W FROZEN_MANIFEST=/abs/path/firmware/manifest_pico_w.py
# The board's own manifest, not the port's: the plain port manifest drops networking.
include("$(PORT_DIR)/boards/RPI_PICO_W/manifest.py")
package("iotlink", base_path="../lib")
