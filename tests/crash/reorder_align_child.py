"""A traced child for test_crash_reorder.py: a record that starts just before a sector ends.

    python -P reorder_align_child.py LOG_DIR ACK_FILE BEFORE

Appends three records with durability "always" and writes one ack line per
append (as replay.crash.reorder_child does). The third record - the one
the test crashes - starts BEFORE bytes before a 512-byte sector boundary,
so a crash that loses that sector but keeps the later ones leaves a record
whose first few bytes are zeros and whose rest is intact.

Why adaptive rather than computed: the test must not depend on the layout
of a record (the format changes). It uses only the segment's size after each
append (where the next record starts) and that a record grows by one byte
per byte of a padding string of 256..65535 characters (msgpack gives such a
str a fixed 3-byte header). It prints the third record's start offset so
that the test can check the alignment worked.
"""

from __future__ import annotations

import json
import os
import sys

from eventlog import EventLog

SECTOR = 512


def main(log_dir: str, ack_file: str, before: int) -> int:
    acks = os.open(ack_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    log = EventLog.open(log_dir, durability="always", segment_bytes=1 << 20)
    segment = os.path.join(log_dir, max(n for n in os.listdir(log_dir) if n.endswith(".log")))

    def put(n: int, pad: int) -> None:
        payload = {"n": n, "pad": "x" * pad}
        seq = log.append(payload)
        os.write(acks, (json.dumps({"seqs": [seq], "payloads": [payload]}) + "\n").encode())

    start = os.path.getsize(segment)
    put(0, 300)
    size = os.path.getsize(segment)
    overhead = size - start - 300
    # pad >= 256 (fixed str header) with size + overhead + pad = -before (mod 512)
    put(1, (SECTOR - before - size - overhead - 256) % SECTOR + 256)
    print(os.path.getsize(segment), flush=True)
    put(2, 900)
    log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
