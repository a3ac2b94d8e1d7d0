"""The wheel carries the firmware: boot.py, main.py, lib/iotlink/ and the freeze manifests in
firmware/ are copied into iotlink_tools/device/, where iotlink_tools.firmware finds them once the
package is installed. An editable install reads them from the checkout instead. (Everything else
about the package is in pyproject.toml.)"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
DEVICE_FILES = ("boot.py", "main.py", "lib/iotlink/**/*.py", "firmware/*.py")  # MANIFEST.in: the same


class BuildWithFirmware(build_py):
    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            for src, dest in self._device_files():
                self.mkpath(str(dest.parent))
                self.copy_file(str(src), str(dest))

    def _device_files(self) -> list[tuple[Path, Path]]:
        target = Path(self.build_lib) / "iotlink_tools" / "device"
        return [(src, target / src.relative_to(HERE)) for pattern in DEVICE_FILES for src in sorted(HERE.glob(pattern))]


setup(cmdclass={"build_py": BuildWithFirmware})
