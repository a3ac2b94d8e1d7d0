from iotlink.app import run

run()
