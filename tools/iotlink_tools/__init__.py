"""Host-side tools for iotlink."""

from pathlib import Path

# The repository this package is installed from (editable install): lib/, boot.py, main.py.
REPO = Path(__file__).resolve().parents[2]
LIB = REPO / "lib"
FAKES = Path(__file__).resolve().parent / "vboard" / "fakes"
