"""The CLI tests run every command as a real subprocess on real state dirs, with
the fixtures of tests/conftest.py (``state_dir``, ``netns_dir``,
``spare_netns_dir``, ``nats_server``) and the helpers of tests/support.py.
The byte surgery of tests/replay/replay_support.py is shared too: its directory
is put on sys.path here, so the test directories do not keep two copies.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "replay"))
