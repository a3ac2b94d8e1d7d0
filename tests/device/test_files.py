"""Files a power cut must never lose (iotlink.files), on FAT as boards format their flash.

FAT cannot rename onto an existing file, so write_atomic removes the old file first: a cut right
there leaves only the complete temporary file. Every reader finds it: config.json, the queue's
head, the update journal (the app's side and boot.py's). The cut is a kill -9 at that moment.
"""

import json

import pytest
from support import REPO

KILLED = -9

# `os` as VfsFat behaves (first in sys.modules, so iotlink imports it), with a power cut right
# after the old file at CUT was removed.
FAT = """
import sys
import os as _os
CUT = {cut!r}
class os:
    pass
for _name in dir(_os):
    setattr(os, _name, getattr(_os, _name))
def _rename(old, new):
    try:
        _os.stat(new)
    except OSError:
        return _os.rename(old, new)
    raise OSError(17)  # EEXIST: FAT renames onto nothing
def _remove(path):
    _os.remove(path)
    if path == CUT:
        _os.system("kill -9 $PPID")
os.rename = staticmethod(_rename)
os.remove = staticmethod(_remove)
sys.modules["os"] = os
"""


def cut(mp, path, code):
    run = mp(FAT.format(cut=path) + code, check=False)
    assert run.returncode == KILLED, run.stdout + run.stderr
    assert not (mp.flash / path).exists() and (mp.flash / (path + ".tmp")).exists()


def test_config_json_survives_a_cut_between_remove_and_rename(mp):
    (mp.flash / "config.json").write_text(json.dumps({"server": "http://127.0.0.1:1", "provision": {
        "key": "k", "secret": "s"}}))
    cut(mp, "config.json", "from iotlink import config_once\nconfig_once.save_token('NEW_TOKEN', 'config.json')\n")
    assert mp("from iotlink import config\nout(config.load()['token'])").result == "NEW_TOKEN"
    assert json.loads((mp.flash / "config.json").read_text())["token"] == "NEW_TOKEN"
    assert not (mp.flash / "config.json.tmp").exists()  # put back in place: the next write is safe


def test_the_queue_head_survives_a_cut_between_remove_and_rename(mp):
    mp("""
from iotlink.store import Store
s = Store()
for i in range(5):
    s.append({"n": i})
s.save_head()
""")
    cut(mp, "queue/head", """
from iotlink.store import Store
s = Store()
records, cursor = s.batch(max_records=3)
s.commit(cursor)
""")
    run = mp("from iotlink.store import Store\ns = Store()\nout([s.pending, s.batch()[0]])")
    assert run.result == [2, [{"n": 3}, {"n": 4}]]  # the 3 sent are not sent again


@pytest.mark.parametrize("reader", [
    "from iotlink import ota_swap\nout(ota_swap.load_state())",
    "import boot\nout(boot.load_state())",
], ids=["app", "boot.py"])
def test_the_update_journal_survives_a_cut_between_remove_and_rename(mp, reader):
    (mp.flash / "boot.py").write_bytes((REPO / "boot.py").read_bytes())
    mp("from iotlink import ota_swap\nota_swap.save_state({'run': {'fw': ['app', '1']}})")
    cut(mp, ".ota/state.json", "from iotlink import ota_swap\nota_swap.save_state({'run': {'fw': ['app', '2']}})")
    assert mp(reader).result == {"run": {"fw": ["app", "2"]}}


def test_boot_py_writes_its_journal_as_safely(mp):
    (mp.flash / "boot.py").write_bytes((REPO / "boot.py").read_bytes())
    mp("from iotlink import ota_swap\nota_swap.save_state({'n': 1})")
    cut(mp, ".ota/state.json", "import boot\nboot.save_state({'n': 2})")
    assert mp("from iotlink import ota_swap\nout(ota_swap.load_state())").result == {"n": 2}
