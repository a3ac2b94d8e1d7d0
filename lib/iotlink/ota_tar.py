# Streaming reader for the tar archives `tar -cf app.tar main.py lib/` makes (ustar, GNU long
# names, pax paths). Fed the archive in slices of any size, in order, it writes the regular
# files and directories under a destination folder and nothing anywhere else: absolute paths,
# "..", links, devices, paths deeper than MAX_DEPTH and reserved top-level names are refused
# (UpdateFailed), and so is a .mpy file this MicroPython cannot load. It reads bytes not yet
# verified: every length is checked before it is used, and every loop moves forward. RAM: one
# 512-byte header block, whatever the archive.
import os
import sys

from iotlink.errors import UpdateFailed

BLOCK = 512
MAX_META = 1024  # a long name or pax header larger than this is not from an app bundle
MAX_DEPTH = 16  # folders in a member's path, its file included: "lib/iotlink/app.py" is 3
_ZERO = bytes(BLOCK)
_FILE_TYPES = (b"0", b"\0", b"7")


def _shown(name):
    return name if len(name) <= 80 else name[:77] + "..."


def member_path(name):
    # "./lib/x.py" -> "lib/x.py"; refuses anything that could land outside the destination.
    if name.startswith("/") or "\\" in name or ":" in name:
        raise UpdateFailed("unsafe path in package: %s" % _shown(name))
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise UpdateFailed("unsafe path in package: %s" % _shown(name))
    if len(parts) > MAX_DEPTH:
        raise UpdateFailed("path deeper than %d levels in package: %s" % (MAX_DEPTH, _shown(name)))
    return "/".join(parts)


def fat_name(name):
    # The name as FAT (the boards' file system) compares it: case aside, trailing dots and spaces
    # dropped. "CONFIG.JSON", "Config.json" and "config.json." are all config.json there.
    return name.rstrip(". ").lower()


def mpy_problem(head):
    # Why a .mpy file starting with these bytes would not load here, or None. A .mpy starts with
    # b"M", its version, then flags: the native architecture in bits 2-7 (0: bytecode only,
    # which any port of that version loads), the sub-version in bits 0-1.
    vm = getattr(sys.implementation, "_mpy", None)
    if vm is None:
        return None  # a port that does not say what it loads
    if len(head) < 4 or head[0] != 0x4D:
        return "is not a .mpy file"
    if head[1] != vm & 0xFF:
        return "is .mpy version %d, this MicroPython loads version %d" % (head[1], vm & 0xFF)
    arch = head[2] >> 2
    if arch and (arch != (vm >> 10) & 0x3F or (head[2] & 3) != (vm >> 8) & 3):
        return "holds native code for another MicroPython (architecture %d)" % arch
    return None


def _octal(field):
    if field[0] & 0x80:
        raise UpdateFailed("member too large")
    digits = bytes(field).strip(b" \0")
    try:
        return int(digits, 8) if digits else 0
    except ValueError:
        raise UpdateFailed("bad number in tar header")


def _text(field):
    end = field.find(b"\0")
    try:
        return str(field if end < 0 else field[:end], "utf-8")
    except UnicodeError:
        raise UpdateFailed("member name is not UTF-8")


class Unpacker:
    def __init__(self, dest, reserved=()):
        # dest: "" or a folder path ending in "/"; reserved: top-level names never written,
        # compared as FAT compares names.
        self.dest = dest
        self.reserved = [fat_name(n) for n in reserved]
        self.top = []  # top-level names in the archive, in order
        self.ended = False  # both end-of-archive zero blocks seen
        self._head = bytearray(BLOCK)
        self._fill = 0  # bytes of the current header block received so far
        self._left = 0  # data bytes of the current member still to come
        self._pad = 0  # padding after them, to the next 512-byte boundary
        self._file = None  # open file the member's data goes to
        self._mpy = None  # (path, first bytes) of a .mpy member being written
        self._meta = None  # bytearray collecting a long name or a pax header
        self._meta_type = None
        self._next_path = None  # path given by a long-name/pax member for the next header
        self._zeros = 0
        self._last_dir = None

    def write(self, data):
        mv = memoryview(data)
        n = len(mv)
        i = 0
        while i < n and not self.ended:
            if self._left:
                take = min(self._left, n - i)
                if self._file:
                    if self._mpy and len(self._mpy[1]) < 4:
                        self._mpy[1].extend(mv[i : i + min(take, 4 - len(self._mpy[1]))])
                    self._file.write(mv[i : i + take])
                elif self._meta is not None:
                    self._meta.extend(mv[i : i + take])
                i += take
                self._left -= take
                if not self._left:
                    self._end_member()
            elif self._pad:
                take = min(self._pad, n - i)
                i += take
                self._pad -= take
            else:
                take = min(BLOCK - self._fill, n - i)
                self._head[self._fill : self._fill + take] = mv[i : i + take]
                self._fill += take
                i += take
                if self._fill == BLOCK:
                    self._fill = 0
                    self._header()

    def close(self):
        # The archive must have ended cleanly: anything else is a truncated or corrupt package.
        self.abort()
        if not self.ended:
            raise UpdateFailed("package truncated: no end-of-archive marker")
        if not self.top:
            raise UpdateFailed("package holds no files")

    def abort(self):
        if self._file:
            self._file.close()
            self._file = None

    def _header(self):
        h = self._head
        if h == _ZERO:
            self._zeros += 1
            self.ended = self._zeros == 2
            return
        if self._zeros:
            raise UpdateFailed("corrupt archive: lone zero block")
        stored = _octal(h[148:156])
        if sum(h) - sum(h[148:156]) + 8 * 32 != stored:
            raise UpdateFailed("corrupt archive: header checksum")
        size = _octal(h[124:136])
        kind = bytes(h[156:157])
        name = _text(h[0:100])
        if h[257:262] == b"ustar":
            prefix = _text(h[345:500])
            if prefix:
                name = prefix + "/" + name
        if self._next_path is not None and kind not in (b"L", b"x"):
            name = self._next_path
            self._next_path = None
        self._left = size
        self._pad = -size % BLOCK
        if kind in (b"L", b"x"):
            if size > MAX_META:
                raise UpdateFailed("tar metadata too large")
            self._meta = bytearray()
            self._meta_type = kind
        elif kind == b"g":
            pass  # global pax header: its data is skipped
        elif kind in _FILE_TYPES:
            path = self._claim(name)
            slash = path.rfind("/")
            if slash > 0:
                self._makedirs(path[:slash])
            self._file = open(self.dest + path, "wb")
            if fat_name(path).endswith(".mpy"):
                self._mpy = (path, bytearray())
        elif kind == b"5":
            self._makedirs(self._claim(name))
        else:
            raise UpdateFailed("unsupported member %s (type %r)" % (name, kind))
        if not size:
            self._end_member()

    def _end_member(self):
        if self._file:
            self._file.close()
            self._file = None
            if self._mpy:
                path, head = self._mpy
                self._mpy = None
                problem = mpy_problem(head)
                if problem:
                    raise UpdateFailed("%s %s" % (path, problem))
        elif self._meta is not None:
            self._next_path = self._meta_path()
            self._meta = None

    def _meta_path(self):
        meta = bytes(self._meta)
        if self._meta_type == b"L":
            return _text(meta)
        # pax records: "<length> <key>=<value>\n", the length counting the whole record. Each
        # must fit what is left and end in a newline: then i always moves forward.
        i = 0
        path = None
        while i < len(meta):
            space = meta.find(b" ", i)
            digits = meta[i:space] if space > i else b""
            if not digits.isdigit():
                raise UpdateFailed("corrupt pax header")
            end = i + int(digits)
            if end <= space + 1 or end > len(meta) or meta[end - 1] != 10:  # 10: b"\n"
                raise UpdateFailed("corrupt pax header")
            key, _, value = meta[space + 1 : end - 1].partition(b"=")
            if key == b"path":
                path = _text(value)
            i = end
        return path

    def _claim(self, name):
        path = member_path(name)
        top = path.split("/")[0]
        fat = fat_name(top)
        if fat in self.reserved:
            raise UpdateFailed("package may not contain %s" % _shown(top))
        if top not in self.top:
            for other in self.top:
                if fat_name(other) == fat:  # one entry on FAT, two elsewhere
                    raise UpdateFailed("package holds both %s and %s" % (_shown(other), _shown(top)))
            self.top.append(top)
        return path

    def _makedirs(self, path):
        if path == self._last_dir:
            return
        d = self.dest
        for part in path.split("/"):
            d += part
            try:
                os.mkdir(d)
            except OSError:
                pass  # exists; a file in the way shows when the member is opened
            d += "/"
        self._last_dir = path
