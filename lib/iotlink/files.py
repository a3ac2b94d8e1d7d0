# Files on the board's flash that a power cut must never leave half written.
import os


def write_atomic(path, data):
    # A power cut leaves the old file or the new one, never half of it: write path + ".tmp",
    # then rename it over the old one (littlefs and the unix port replace the target in one
    # step). FAT cannot rename onto an existing file: there the old file is removed first, and a
    # reader that finds no file at path takes path + ".tmp", which is then complete.
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    try:
        os.rename(tmp, path)
    except OSError:
        os.remove(path)
        os.rename(tmp, path)
    if hasattr(os, "sync"):
        os.sync()
