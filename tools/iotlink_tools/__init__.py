"""Host-side tools for iotlink: the `iotlink` command (cli.py, commands/), the devserver, virtual
boards (vboard/) and the firmware they install (firmware.py)."""
