"""The text of an strace log: lines to complete calls, arguments to values.

``strace -f -X raw -xx -y`` (``trace.strace_command``) prints one line per
syscall, every string as ``\\xNN`` escapes (paths in fd decorations too),
flags as raw numbers. A syscall that another thread interrupts is printed in
two parts: ``<unfinished ...>`` at entry and ``<... name resumed>`` at
return; :func:`calls` joins them and yields complete calls, in the order
they returned, with the line numbers of their entry and return. Failed calls
(a negative return) changed nothing and are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence

import attrs

__all__ = [
    "Call",
    "StraceFormatError",
    "calls",
    "fd_arg",
    "hexed",
    "int_arg",
    "iov_arg",
    "split_args",
    "string_arg",
    "unhex",
]


class StraceFormatError(Exception):
    """An argument is not what the trace format promises (e.g. a cut string)."""


_LINE = re.compile(r"^(?:(\d+)\s+)?(.*)$")
_CALL = re.compile(r"^(\w+)\((.*)\)\s+=\s+(.*)$", re.S)
_FD = re.compile(r"^(-?\d+)(?:<(.*?)>)?(\(deleted\))?$")
_RET = re.compile(r"^(-?\d+|0x[0-9a-f]+)(?:<(.*?)>)?")
_HEXSTR = re.compile(r'^"((?:\\x[0-9a-f]{2})*)"$')
_IOV = re.compile(r'iov_base="((?:\\x[0-9a-f]{2})*)"(\.\.\.)?')


def split_args(text: str) -> list[str]:
    """Split a call's arguments at top-level commas (strings, [] {} <> nest)."""
    out: list[str] = []
    depth = 0
    begin = 0
    i = 0
    in_str = False
    while i < len(text):
        c = text[i]
        if in_str:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "[{<":
            depth += 1
        elif c in "]}>":
            depth -= 1
        elif c == "," and depth == 0:
            out.append(text[begin:i].strip())
            begin = i + 1
        i += 1
    tail = text[begin:].strip()
    if tail:
        out.append(tail)
    return out


def unhex(body: str) -> bytes:
    """``\\x2f\\x74`` -> ``b"/t"`` (strace -xx escapes every byte)."""
    return bytes.fromhex(body.replace("\\x", ""))


def string_arg(arg: str) -> bytes:
    """A quoted string argument's bytes; a cut string (``"..."...``) is an error."""
    m = _HEXSTR.match(arg)
    if m is None:
        raise StraceFormatError(f"not a complete string (raise the strace -s limit?): {arg[:80]}")
    return unhex(m.group(1))


def int_arg(arg: str) -> int:
    """A number as ``-X raw`` prints it: decimal, ``0x`` hex, or ``0``-octal (modes)."""
    if arg.startswith(("0x", "-0x")):
        return int(arg, 16)
    if len(arg) > 1 and arg.startswith("0"):
        return int(arg, 8)
    return int(arg)


def fd_arg(arg: str) -> tuple[int, str | None]:
    """``3<\\x2f...>`` -> (3, "/..."); the path is None when -y gave none (or no file)."""
    m = _FD.match(arg)
    if m is None:
        raise StraceFormatError(f"not a file descriptor: {arg[:80]}")
    path = None
    if m.group(2) is not None:
        try:
            path = unhex(m.group(2)).decode("utf-8", "surrogateescape")
        except ValueError:
            path = None
    return int(m.group(1)), path


def iov_arg(arg: str) -> bytes:
    """The bytes of a ``writev``/``pwritev`` iovec array, concatenated in order."""
    parts = []
    for m in _IOV.finditer(arg):
        if m.group(2):
            raise StraceFormatError("iovec string cut: raise the strace -s limit")
        parts.append(unhex(m.group(1)))
    return b"".join(parts)


@attrs.frozen
class Call:
    """One complete, successful syscall: its arguments as text, its return value
    (and the path -y printed for a returned fd), the lines of entry and return."""

    name: str
    args: list[str]
    ret: int
    ret_path: str | None
    start: int
    end: int


def calls(lines: Iterable[str], keep: Sequence[str]) -> Iterator[Call]:
    """Complete syscalls (unfinished + resumed joined) whose text mentions ``keep``."""
    pending: dict[str, tuple[int, str]] = {}
    for lineno, raw in enumerate(lines):
        m = _LINE.match(raw.rstrip("\n"))
        if m is None:
            continue
        pid, body = m.group(1) or "", m.group(2)
        if body.startswith(("+++", "---")):
            continue
        start = lineno
        if body.startswith("<..."):
            if pid not in pending:
                continue
            start, head = pending.pop(pid)
            body = head + body[body.index("resumed>") + len("resumed>") :]
        elif body.endswith("<unfinished ...>"):
            # Kept whatever it names: the return value may be the only part
            # that mentions ``keep`` (an fd decorated with its path).
            pending[pid] = (lineno, body[: -len("<unfinished ...>")].rstrip())
            continue
        if not any(k in body for k in keep):
            continue
        c = _CALL.match(body)
        if c is None:
            continue
        r = _RET.match(c.group(3).strip())
        if r is None or r.group(1).startswith("-"):
            continue  # failed: no effect
        ret_path = None
        if r.group(2) is not None:
            try:
                ret_path = unhex(r.group(2)).decode("utf-8", "surrogateescape")
            except ValueError:  # not a file (a socket, a pipe): no path
                ret_path = None
        yield Call(c.group(1), split_args(c.group(2)), int_arg(r.group(1)), ret_path, start, lineno)


def hexed(path: str) -> str:
    """``path`` as strace -xx prints it (to find lines that mention it cheaply)."""
    return "".join(f"\\x{b:02x}" for b in path.encode())
