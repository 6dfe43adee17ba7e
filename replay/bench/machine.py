"""The facts of the machine a benchmark ran on, printed above its table.

Why: absolute figures from a VM with a write-back host cache mean little on
their own; a reader comparing two runs needs to know whether the CPU, the
memory, the filesystem under the bench directory, the kernel, Python or
msgpack changed before comparing anything. Everything here is read from
/proc and the interpreter, never from a subprocess, so it works in a
minimal container and costs nothing.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from importlib import metadata

import attrs

__all__ = ["MachineFacts", "collect", "filesystem_of"]


@attrs.frozen
class MachineFacts:
    """What a reader needs to judge whether two runs are comparable."""

    cpu_count: int
    cpu_model: str
    memory_bytes: int
    bench_dir: str
    filesystem: str
    kernel: str
    python: str
    msgpack: str
    eventsourcing: str
    load_average: str = ""

    def items(self) -> list[tuple[str, str]]:
        """(label, text) pairs in display order."""
        return [
            ("cpus", f"{self.cpu_count} x {self.cpu_model}"),
            ("memory", f"{self.memory_bytes / 2**30:.1f} GiB"),
            ("bench dir", f"{self.bench_dir} ({self.filesystem})"),
            ("kernel", self.kernel),
            ("python", self.python),
            ("msgpack", self.msgpack),
            ("eventsourcing", self.eventsourcing),
            ("load average at start", self.load_average or "unknown"),
        ]

    def to_dict(self) -> dict[str, object]:
        return attrs.asdict(self)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() in ("model name", "Processor", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _memory_bytes() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo (octal).
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def filesystem_of(path: str, mountinfo: str = "/proc/self/mountinfo") -> str:
    """The filesystem type of the mount holding ``path`` ("fstype source").

    The deepest mount point that is a prefix of the real path wins; when
    several mounts are stacked on that point, the last one listed is the
    visible one. Returns "unknown" if mountinfo cannot be read.
    """
    real = os.path.realpath(path)
    best: tuple[int, str] | None = None
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                left, sep, right = line.partition(" - ")
                fields = left.split()
                if not sep or len(fields) < 5:
                    continue
                point = _unescape(fields[4])
                inside = real == point or real.startswith(point.rstrip("/") + "/")
                if inside and (best is None or len(point) >= best[0]):
                    tail = right.split()
                    fs = tail[0] if tail else "?"
                    source = tail[1] if len(tail) > 1 else "?"
                    best = (len(point), f"{fs} on {source}")
    except OSError:
        return "unknown"
    return best[1] if best is not None else "unknown"


def _load_average() -> str:
    """1/5/15-minute load averages: a run on a busy machine says so on top."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return ""
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _msgpack_version() -> str:
    """msgpack's version and whether its C extension is in use (the pure-Python
    fallback is ~10x slower and would make every ratio against it meaningless)."""
    try:
        import msgpack
    except ImportError:
        return "not installed"
    impl = "C extension" if msgpack.Unpacker.__module__.endswith("_cmsgpack") else "pure Python"
    return f"{_version('msgpack')} ({impl})"


def collect(bench_dir: str) -> MachineFacts:
    """The facts of this machine, with the filesystem that holds ``bench_dir``."""
    return MachineFacts(
        cpu_count=os.cpu_count() or 0,
        cpu_model=_cpu_model(),
        memory_bytes=_memory_bytes(),
        bench_dir=os.path.realpath(bench_dir),
        filesystem=filesystem_of(bench_dir),
        kernel=f"{platform.system()} {platform.release()}",
        python=f"{platform.python_implementation()} {sys.version.split()[0]}",
        msgpack=_msgpack_version(),
        eventsourcing=_version("eventsourcing"),
        load_average=_load_average(),
    )
