# Files on the board's flash that a power cut must never leave half written: written with
# write_atomic, read back with read.
import os


def write_atomic(path, data):
    # A power cut leaves the old file or the new one, never half of it: write path + ".tmp",
    # then rename it over the old one (littlefs and the unix port replace the target in one
    # step). FAT cannot rename onto an existing file: there the old file is removed first, and a
    # cut between the remove and the rename leaves only path + ".tmp", complete: read() finds it.
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


def read(path):
    # The bytes of a file written with write_atomic. Missing, it is the temporary file that a cut
    # on FAT left: renamed into place first, so the next write cannot truncate the only copy.
    # OSError when neither is there.
    try:
        f = open(path, "rb")
    except OSError:
        os.rename(path + ".tmp", path)
        f = open(path, "rb")
    with f:
        return f.read()
