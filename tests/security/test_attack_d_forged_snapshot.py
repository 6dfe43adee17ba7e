"""Attack D: a forged snapshot on a keyed log, made without the key.

The attacker can write the state dir but does not hold the log's key. They
fold the real records, add a ghost sandbox that "owns" a live namespace the
log never assigned and claim its removal is requested, and write that as a
snapshot with a correct checksum and the log's real chain digest. Before the
fix, opening the store believed it: the reconciler unmounted and deleted the
foreign namespace (and logged a keyed NetNSRemoved for it, so the lie became
history), and ``pods`` showed the ghost. On a keyed log a snapshot must carry
a MAC under the key, so the forgery is skipped and a full replay is used.
"""

from __future__ import annotations

from pathlib import Path

import snapshot_forgery as sec
import support

import eventlog
from replay.view import load
from sandbox import NetNS, Store

KEY = b"the chain key of this node, kept from the attacker"


def test_attack_d_forged_snapshot(tmp_path: Path, netns_dir: Path) -> None:
    state = tmp_path / "state"
    real = support.sandbox("real")
    with Store.open(state, netns_dir=netns_dir, key=KEY) as store:
        store.add(real)
        for pid in (11, 12, 13):  # harmless records the forgery's lies stand in for
            store.update_status(real.id, lambda old, p=pid: type(old)(old.state, pid=p))
        last = store.last_seq
    foreign = NetNS.new(netns_dir).get_path()  # someone else's: the log never assigned it
    ghost = support.sandbox("ghost")
    try:
        forged = sec.forge_snapshot(state, netns_dir, last, sec.ghost_events(ghost, foreign), KEY)

        with Store.open(state, netns_dir=netns_dir, key=KEY) as store:
            report = store.reconcile()
            assert store.load_result is not None
            assert store.load_result.snapshot is None, "a snapshot without a MAC was used"
            assert [p for p, _why in store.load_result.skipped] == [forged]
            assert ghost.id not in store
            assert [sb.id for sb in store.list()] == [real.id]
            assert foreign not in report.removed
        assert support.mounts_at(foreign)[-1].fstype == support.NSFS, "foreign netns removed"

        view = load(state, key=KEY, netns_dir=str(netns_dir))  # what `pods` reads
        assert view.snapshot is None
        assert [sb.id for sb in view.list()] == [real.id]
        assert eventlog.verify(state, key=KEY).ok
    finally:
        sec.drop_namespace(foreign)
