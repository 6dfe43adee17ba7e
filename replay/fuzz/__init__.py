"""Coverage-guided fuzz targets for the log, snapshot and metadata decoders.

Three targets, each a function that takes the fuzzer's bytes (``targets``):

``log``
    the bytes become the files of a log directory (``logcase``); ``read``,
    ``verify`` and writer-open recovery run on them and must agree.
``snapshot``
    the bytes are a snapshot file for ``sandbox.snapshot``'s decoder, and
    are installed next to a real log for ``snapshot.load``.
``metadata``
    the bytes are a containerd metadata blob for ``Metadata.from_json``.

Only the errors each contract documents may escape a target; anything else
(a raw ``IndexError``, ``struct.error``, ``MemoryError``, a disagreement
between two readers, a hang) is a finding. Seed inputs are built at run time
from real logs and snapshots (``corpus``), never checked in as bytes, so the
targets follow the on-disk formats as they change.

``run`` drives atheris (``python -m replay.fuzz.run TARGET --runs N``); it
is the only module that imports atheris, which stays an optional dependency.
See docs/FUZZING.md.
"""
