"""Attack B, snapshots: a FIFO in place of a ``*.snap`` file.

Before: the snapshot reader opened ``*.snap`` with a plain open(), so a FIFO
named like the newest snapshot hung ``pods``, ``verify``, ``snapshot`` and
Store.open for ever. Now snapshots are opened non-blocking and kind-checked
(sandbox/snapshot_files.py on eventlog.files): the FIFO is skipped with a
warning (``verify`` reports it), the store replays from the log, and
nothing hangs.
"""

from __future__ import annotations

import os
from pathlib import Path

import support
from security_support import in_child, sandboxctl

from sandbox import Store


def test_fifo_snapshot_never_hangs_a_reader_or_the_store(tmp_path: Path) -> None:
    state, netns = tmp_path / "state", tmp_path / "netns"
    netns.mkdir()
    with Store.open(state, netns_dir=netns) as store:
        for i in range(3):
            store.add(support.sandbox(f"p{i}"))
        store.snapshot()
    newest = max(state.glob("*.snap"))
    fifo = state / f"{int(newest.name[:20]) + 100:020d}.snap"
    os.mkfifo(fifo)
    for args in (("pods", "-o", "json"), ("snapshot",)):
        cp = sandboxctl("--state-dir", str(state), "--netns-dir", str(netns), *args)
        assert cp.returncode == 0, (args, cp.stdout, cp.stderr)
    # verify does not hang either; it names the FIFO as what it is.
    cp = sandboxctl("--state-dir", str(state), "--netns-dir", str(netns), "verify")
    assert "a FIFO, not a snapshot file" in cp.stdout + cp.stderr, cp
    opened = in_child(
        "import sys\nfrom sandbox import Store\n"
        "with Store.open(sys.argv[1], netns_dir=sys.argv[2]) as s:\n    print(len(s))\n",
        str(state),
        str(netns),
    )
    assert opened.returncode == 0 and opened.stdout.split() == ["3"], opened.stderr
    assert fifo.exists() and not fifo.is_file()  # left alone, never opened for writing
