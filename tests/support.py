"""Plain helpers shared by every test directory (tests/conftest.py puts tests/ on
sys.path, so test modules and conftests import this as ``support``).

Mount checks read /proc/self/mountinfo directly and unmount with the raw
syscall wrapper: what counts as a leaked namespace must not come from the code
under test. Directory-specific helpers stay in the directory's own
``*_support.py``.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import attrs
import pytest

import sandbox as sandbox_pkg
from sandbox import Metadata, PodSandboxConfig, PodSandboxMetadata, Sandbox, State, Status, _linux

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]
NSFS = "nsfs"
NO_TRACEBACK = "Traceback"
METRICS_URL_RE = re.compile(rb"metrics on (http://\S+/metrics)")
CNI_NAME = re.compile(r"^cni-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


# The event log's crash points, each named in FORMAT.md.
LOG_CRASH_POINTS = (
    "append.before_write",
    "append.after_write",
    "append.after_fsync",
    "batch.mid_write",
    "rotate.after_sync_old",
    "rotate.after_create",
    "rotate.after_header",
)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


# -- mounts ---------------------------------------------------------------------------------


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


@attrs.frozen
class Mount:
    mount_point: str
    fstype: str
    root: str


def mounts() -> list[Mount]:
    """The calling process's mount table, from /proc/self/mountinfo."""
    out: list[Mount] = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            out.append(Mount(_unescape(fields[4]), right.split()[0], _unescape(fields[3])))
    return out


def mounts_at(path: str | os.PathLike[str]) -> list[Mount]:
    """Every mount stacked exactly at ``path`` (its real path)."""
    real = os.path.realpath(path)
    return [m for m in mounts() if m.mount_point == real]


def mounts_under(directory: str | os.PathLike[str]) -> list[Mount]:
    """Every mount strictly below ``directory`` (its real path)."""
    real = os.path.realpath(directory)
    return [m for m in mounts() if m.mount_point.startswith(real + os.sep)]


def nsfs_mounts_under(directory: str | os.PathLike[str]) -> list[str]:
    """The mount points of the namespace (nsfs) mounts below ``directory``."""
    return [m.mount_point for m in mounts_under(directory) if m.fstype == NSFS]


def detach_everything_under(directory: str | os.PathLike[str]) -> list[Mount]:
    """Unmount (lazily, deepest first, stacked ones too) every mount under
    ``directory``; returns what was found."""
    found = mounts_under(directory)
    for _ in range(len(found) + 8):
        left = mounts_under(directory)
        if not left:
            break
        for m in sorted(left, key=lambda m: len(m.mount_point), reverse=True):
            with contextlib.suppress(OSError):
                _linux.umount_detach(m.mount_point)
    return found


def fail_on_leaks(leaked: list[str]) -> None:
    """FAIL the running test when any namespace mount was left behind."""
    if leaked:
        pytest.fail("leaked network namespace mount(s): " + ", ".join(leaked), pytrace=False)


def clean_and_check(directory: str | os.PathLike[str]) -> None:
    """Teardown of a netns dir: detach everything under ``directory`` (one failing
    test never leaks into the next), then FAIL the test if any of it was nsfs."""
    fail_on_leaks([m.mount_point for m in detach_everything_under(directory) if m.fstype == NSFS])


def in_user_namespace() -> bool:
    """True when uid 0 here is not the machine's root (``unshare -Urm``, as
    ``./dev test`` runs for a plain user): only the initial user namespace maps
    the whole uid range onto itself."""
    with open("/proc/self/uid_map", encoding="ascii") as f:
        return f.read().split() != ["0", "0", "4294967295"]


def skip_unless_root(why: str = "creates real network namespaces") -> None:
    """Skip without root - root of a user namespace will do: ``./dev test``
    re-runs a plain user's tests under ``unshare -Urm``, where creating network
    namespaces on tmp paths works.

    In CI (``CI=true``) a missing root is a FAILURE, not a skip: CI runs the
    suite as root and the namespace tests again as a plain user through that
    re-run, so a skip there would hide a broken setup."""
    if os.geteuid() == 0:
        return
    msg = f"needs root: {why} (./dev test runs a plain user's tests under unshare -Urm)"
    if in_ci():
        pytest.fail(f"{msg}; CI=true, so a skip would hide a broken setup", pytrace=False)
    pytest.skip(msg)


def skip_unless_real_root(why: str) -> None:
    """Skip unless this is the machine's root, not root of a user namespace: for
    what only the real root may do (write the shared /var/run/netns). Never a
    failure in CI: the root run covers it."""
    if os.geteuid() != 0 or in_user_namespace():
        pytest.skip(f"needs the real root, not a user namespace's: {why}")


# -- sandboxes ------------------------------------------------------------------------------


def sandbox(
    name: str,
    namespace: str = "default",
    *,
    sid: str | None = None,
    state: State = State.READY,
    created_at: int | None = None,
    attempt: int = 0,
    netns_path: str = "",
) -> Sandbox:
    uid = f"uid-{name}"
    cfg = PodSandboxConfig(
        metadata=PodSandboxMetadata(name=name, uid=uid, namespace=namespace, attempt=attempt),
        labels={"app": name},
    )
    md = Metadata(
        sid or uuid.uuid4().hex + uuid.uuid4().hex,
        f"{name}_{namespace}_{uid}_{attempt}",
        cfg,
        netns_path,
    )
    status = Status(state, created_at=created_at if created_at is not None else time.time_ns())
    return Sandbox(md, status)


MakeSandbox = Callable[..., Sandbox]
OpenStore = Callable[..., sandbox_pkg.Store]
# The errors a store command may raise on a valid call that loses a race.
DOCUMENTED = (
    sandbox_pkg.AlreadyExistsError,
    sandbox_pkg.NotFoundError,
    sandbox_pkg.InvalidTransitionError,
)


# -- threads --------------------------------------------------------------------------------


def start_threads(count: int, target: Callable[[int], None]) -> list[threading.Thread]:
    """``count`` threads running ``target(i)``, started."""
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    return threads


def run_threads(count: int, target: Callable[[int], None]) -> None:
    """Run ``target(i)`` in ``count`` threads and wait for all of them."""
    for t in start_threads(count, target):
        t.join()


def add_with_netns(store: sandbox_pkg.Store, sb: Sandbox) -> tuple[Sandbox, str]:
    """``store.add(sb, create_netns=True)``: the added sandbox and its namespace's path."""
    added = store.add(sb, create_netns=True)
    assert added.netns is not None
    return added, added.netns.get_path()


# -- subprocesses ---------------------------------------------------------------------------


def error_of(call: Callable[[], object]) -> tuple[type[BaseException], str] | None:
    """What ``call()`` raises, as (type, message); None if it returns: for tests that
    compare a fast path's refusals with the reference path's."""
    try:
        call()
    except Exception as exc:
        return type(exc), str(exc)
    return None


def run_python(
    code: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a child interpreter of this venv (repo on sys.path)."""
    full_env = dict(os.environ)
    full_env.pop("SANDBOX_CRASHPOINT", None)
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def sandboxctl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m replay ARGS`` from the repo, without a state dir or crash point
    inherited from the developer's shell."""
    env = dict(os.environ)
    env.pop("SANDBOXCTL_STATE_DIR", None)
    env.pop("SANDBOX_CRASHPOINT", None)
    return subprocess.run(
        [sys.executable, "-m", "replay", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )


def ok(cp: subprocess.CompletedProcess[str]) -> str:
    """Exit 0 and no traceback; the stdout."""
    assert cp.returncode == 0, (cp.returncode, cp.stdout, cp.stderr)
    assert NO_TRACEBACK not in cp.stderr
    return cp.stdout


def fails(cp: subprocess.CompletedProcess[str], code: int, words: str = "") -> str:
    """Exit ``code`` with ONE line on stderr, ``sandboxctl: error: ...``, no traceback."""
    assert cp.returncode == code, (cp.returncode, cp.stdout, cp.stderr)
    lines = cp.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sandboxctl: error: "), cp.stderr
    assert words in lines[0], (words, lines[0])
    return lines[0]


def spawn_sandboxctl(*args: str, stdout: int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    """``python -m replay ARGS`` as a child (stderr piped, no state dir inherited)."""
    env = dict(os.environ)
    env.pop("SANDBOXCTL_STATE_DIR", None)
    return subprocess.Popen(
        [sys.executable, "-m", "replay", *args],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.PIPE,
    )


def read_ready(fd: int, wait: float = 0.2) -> bytes | None:
    """What ``fd`` gives within ``wait`` seconds: None when nothing, b"" at its end.

    Reads the fd directly: a buffered reader could hold data in its buffer while
    select() says there is nothing more to read."""
    ready, _, _ = select.select([fd], [], [], wait)
    return os.read(fd, 65536) if ready else None


def read_metrics_url(proc: subprocess.Popen[bytes], timeout: float = 30) -> str:
    """The URL a child prints on stderr once it serves metrics (bounded wait)."""
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = METRICS_URL_RE.search(buf)
        if m:
            return m.group(1).decode()
        chunk = read_ready(fd)
        if chunk == b"":
            break
        buf += chunk or b""
    pytest.fail(f"no metrics URL on stderr (exit {proc.poll()}): {buf.decode(errors='replace')}")


def poll_until(scrape: Callable[[], T], cond: Callable[[T], bool], what: str, timeout: float) -> T:
    """Call ``scrape`` until ``cond`` holds of what it returns; fail with the last
    result after ``timeout``."""
    deadline = time.monotonic() + timeout
    samples = scrape()
    while not cond(samples):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; last scrape: {samples}")
        time.sleep(0.05)
        samples = scrape()
    return samples
