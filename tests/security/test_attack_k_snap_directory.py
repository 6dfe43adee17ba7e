"""Attack K: things that are not snapshot files under snapshot names.

A directory named ``00000000000000000007.snap`` among old snapshots made
``snapshot`` write the new one and then fail with "Is a directory" while
pruning. A FIFO under the newest snapshot's name blocked the loader's open
for ever; a symlink was followed to whatever it names. Now pruning and
loading skip, with a warning, anything that is not a regular file this code
made; nothing is followed or waited on.

The loads run in a child: on vulnerable code a FIFO hangs the open, and the
child's safety timeout turns that into a failure (never a timed assert).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import support

from sandbox import Store
from sandbox import snapshot as snap

_OPEN_IN_CHILD = """
import sys
from sandbox import Store
with Store.open(sys.argv[1], netns_dir=sys.argv[2]) as store:
    print(store.load_result.snapshot, len(store), flush=True)
"""


def test_attack_k_snap_directory(
    tmp_path: Path, spare_netns_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    caplog.set_level(logging.WARNING)
    planted = Path(snap.snapshot_path(state, 7))
    with Store.open(state, netns_dir=spare_netns_dir) as store:
        for i in range(15):
            store.add(support.sandbox(f"pod{i}"))
            if i == 8:
                store.snapshot()
                planted.mkdir()  # older than every later snapshot: prune's to delete
                (planted / "keep-me").write_bytes(b"not the store's")
            elif 9 <= i <= 11:
                newest = store.snapshot()  # raised IsADirectoryError while pruning
                assert os.path.exists(newest)
    assert (planted / "keep-me").read_bytes() == b"not the store's"
    assert str(planted) in caplog.text
    assert [seq for seq, _p in snap.list_snapshots(state)] == [13, 12, 11, 7]

    target = tmp_path / "elsewhere.snap"
    target.write_bytes(Path(newest).read_bytes())
    # Newer than the newest real snapshot, within the log (seq 1 records the netns dir,
    # 2..16 add the pods): the loader tries them first.
    os.symlink(target, snap.snapshot_path(state, 14))  # a link: never followed
    os.mkfifo(snap.snapshot_path(state, 15))  # a FIFO: never waited on
    os.mkdir(snap.snapshot_path(state, 16))  # a directory: not a snapshot
    cp = support.run_python(_OPEN_IN_CHILD, str(state), str(spare_netns_dir), timeout=60)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.split() == [newest, "15"]
    for seq in (14, 15, 16):
        assert snap.snapshot_path(state, seq) in cp.stderr  # each skipped with a warning
