"""Record a process's file operations with strace and parse them into a list.

Why strace and not a hook in the log: the reorder model (``reorder``) must
judge the bytes a writer really handed the kernel, in the order the kernel
saw them, for a build that may be broken - and without touching eventlog.
So the workload runs under ``strace -f`` and this module turns the trace
into ``fsops`` events, each one file operation restricted to one
directory tree (the "root"; everything else the interpreter does is
dropped). The parser keeps the namespace and each file's contents
as the page cache holds them, which gives the offset of a ``write`` on an
``O_APPEND`` fd (the size at that moment) and of a plain ``write`` (the
open file description's position, moved by writes and ``lseek``; ``dup``
shares it).

Ordering: strace prints a syscall when it returns (or, for a syscall that
another thread's line interrupts, an ``<unfinished ...>`` line at entry and a
``resumed`` line at return). An event's ``start`` is its entry line, ``end``
its return line, and the list is in ``end`` order. That order respects
causality: a thread's next syscall enters only after strace printed the
previous one's return, so an ack written after ``append`` returned comes after
the fdatasync that made its record durable. A sync makes durable what
completed before it STARTED (``end < sync.start``); a write that completed
while a sync was in flight is not covered by it.

Limits (named, not hidden): ``read`` is not traced, so a plain ``write`` on
an fd that was also read from would get a wrong offset (eventlog writes only
through O_APPEND fds, fresh fds and pwrite); one process's fd table is
assumed (threads, no fork); a rename across directories, a symlink and
fallocate are refused as unsupported.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence

import attrs

from replay.crash.fsops import (
    ROOT_FID,
    Ack,
    Event,
    Image,
    Link,
    Op,
    Rename,
    Sync,
    SyncAll,
    Trace,
    Truncate,
    Unlink,
    Write,
)
from replay.crash.stracetext import (
    Call,
    StraceFormatError,
    calls,
    fd_arg,
    hexed,
    int_arg,
    iov_arg,
    string_arg,
)

__all__ = ["SYSCALLS", "TraceError", "parse_trace", "strace_command"]

#: The syscalls worth seeing; "?" lets strace skip names this arch lacks.
SYSCALLS = (
    "openat,?open,?creat,write,pwrite64,writev,pwritev,pwritev2,fsync,fdatasync,"
    "?rename,renameat,renameat2,?unlink,unlinkat,?rmdir,ftruncate,truncate,close,"
    "?mkdir,mkdirat,?link,linkat,dup,?dup2,dup3,fcntl,lseek,sync,syncfs,fallocate,"
    "?symlink,symlinkat"
)
#: strace's string limit: bigger than any write a workload makes.
STRING_LIMIT = 1 << 22


class TraceError(Exception):
    """The trace cannot be turned into operations (unsupported call, cut string)."""


def strace_command(trace_file: str, argv: Sequence[str]) -> list[str]:
    """The strace command line that records ``argv`` into ``trace_file``."""
    strace = shutil.which("strace") or "/usr/bin/strace"
    return [
        strace,
        "-f",
        "-qq",
        "-X",
        "raw",
        "-xx",
        "-y",
        "-s",
        str(STRING_LIMIT),
        "-o",
        trace_file,
        "-e",
        f"trace={SYSCALLS}",
        "-e",
        "signal=none",
        *argv,
    ]


@attrs.define
class _Ofd:
    """An open file description: what fds share after dup."""

    fid: int
    pos: int
    append: bool


class _Parser:
    """Replays the calls against a model of the tree to name files and offsets."""

    def __init__(self, root: str, ack_file: str | None, initial: Image, paths: dict[str, int]):
        # -y prints resolved paths: compare against the resolved root.
        self.root = os.path.realpath(root)
        self.ack_file = os.path.realpath(ack_file) if ack_file else None
        self.entries = {d: dict(names) for d, names in initial.entries.items()}
        self.data: dict[int, bytearray] = {f: bytearray(b) for f, b in initial.data.items()}
        self.names = {fid: p for p, fid in paths.items()}
        self.next_fid = max([ROOT_FID, *initial.entries, *initial.data]) + 1
        self.fds: dict[int, _Ofd] = {}
        self.ack_fds: set[int] = set()
        self.events: list[Event] = []
        self.notes: list[str] = []
        self.dirs: set[int] = set(initial.entries)
        self._last_write: dict[int, int] = {}

    # -- paths -------------------------------------------------------------

    def _rel(self, path: str) -> str | None:
        path = os.path.normpath(path)
        if path == self.root:
            return ""
        if path.startswith(self.root + "/"):
            return path[len(self.root) + 1 :]
        return None

    def _lookup(self, rel: str) -> int | None:
        fid = ROOT_FID
        for part in rel.split("/") if rel else []:
            names = self.entries.get(fid)
            if names is None or part not in names:
                return None
            fid = names[part]
        return fid

    def _parent(self, rel: str) -> tuple[int, str]:
        head, _, name = rel.rpartition("/")
        parent = self._lookup(head)
        if parent is None or parent not in self.entries:
            raise TraceError(f"no parent directory modelled for {rel!r}")
        return parent, name

    def _at(self, dirfd_arg: str, path_arg: str) -> str:
        path = string_arg(path_arg).decode("utf-8", "surrogateescape")
        if os.path.isabs(path):
            return path
        _, base = fd_arg(dirfd_arg)
        if base is None:
            raise TraceError(f"relative path {path!r} with an undecorated dirfd")
        return os.path.join(base, path)

    # -- events ------------------------------------------------------------

    def _emit(self, call: Call, op: Op) -> None:
        self.events.append(Event(call.start, call.end, op, call.name))

    def _new_name(self, call: Call, rel: str, is_dir: bool) -> int:
        parent, name = self._parent(rel)
        fid = self.next_fid
        self.next_fid += 1
        self.entries[parent][name] = fid
        if is_dir:
            self.entries[fid] = {}
            self.dirs.add(fid)
        else:
            self.data[fid] = bytearray()
        self.names[fid] = rel
        self._emit(call, Link(parent, name, fid))
        return fid

    def _write(self, call: Call, fid: int, offset: int, data: bytes) -> None:
        buf = self.data.setdefault(fid, bytearray())
        if offset > len(buf):
            buf.extend(bytes(offset - len(buf)))
        buf[offset : offset + len(data)] = data
        prev = self._last_write.get(fid)
        if prev is not None and prev > call.start:
            self.notes.append(
                f"overlapping writes to {self.names.get(fid)} at lines {prev} and {call.end}: "
                "ordered by completion"
            )
        self._last_write[fid] = call.end
        self._emit(call, Write(fid, offset, data))

    def _truncate(self, call: Call, fid: int, size: int) -> None:
        buf = self.data.setdefault(fid, bytearray())
        if size < len(buf):
            del buf[size:]
        else:
            buf.extend(bytes(size - len(buf)))
        self._emit(call, Truncate(fid, size))

    def _fd_fid(self, arg: str) -> tuple[int, _Ofd | None, str | None]:
        fd, path = fd_arg(arg)
        return fd, self.fds.get(fd), path

    # -- calls -------------------------------------------------------------

    def feed(self, call: Call) -> None:
        handler = getattr(self, "_c_" + call.name, None)
        if handler is None:
            raise TraceError(f"unsupported call under the traced root: {call.name}")
        handler(call)

    def _open(self, call: Call, path: str, flags: int) -> None:
        if self.ack_file is not None and os.path.normpath(path) == self.ack_file:
            self.ack_fds.add(call.ret)
            return
        rel = self._rel(path)
        if rel is None:
            return
        fid = self._lookup(rel)
        if fid is None:
            if not flags & os.O_CREAT:
                return
            fid = self._new_name(call, rel, is_dir=False)
        elif flags & os.O_TRUNC and fid not in self.entries and self.data.get(fid):
            self._truncate(call, fid, 0)
        self.fds[call.ret] = _Ofd(fid, 0, bool(flags & os.O_APPEND))

    def _c_openat(self, call: Call) -> None:
        self._open(call, self._at(call.args[0], call.args[1]), int_arg(call.args[2]))

    def _c_open(self, call: Call) -> None:
        self._open(call, self._at("-100", call.args[0]), int_arg(call.args[1]))

    def _c_creat(self, call: Call) -> None:
        flags = os.O_CREAT | os.O_WRONLY | os.O_TRUNC
        self._open(call, self._at("-100", call.args[0]), flags)

    def _c_close(self, call: Call) -> None:
        fd, _ = fd_arg(call.args[0])
        self.fds.pop(fd, None)
        self.ack_fds.discard(fd)

    def _dup_to(self, call: Call, new: int) -> None:
        fd, _ = fd_arg(call.args[0])
        if fd in self.ack_fds:
            self.ack_fds.add(new)
        elif fd in self.fds:
            self.fds[new] = self.fds[fd]

    def _c_dup(self, call: Call) -> None:
        self._dup_to(call, call.ret)

    _c_dup2 = _c_dup
    _c_dup3 = _c_dup

    def _c_fcntl(self, call: Call) -> None:
        if int_arg(call.args[1]) in (0, 0x406):  # F_DUPFD, F_DUPFD_CLOEXEC
            self._dup_to(call, call.ret)

    def _c_lseek(self, call: Call) -> None:
        _, ofd, _ = self._fd_fid(call.args[0])
        if ofd is not None:
            ofd.pos = call.ret

    def _data_call(self, call: Call, data: bytes, offset: int | None) -> None:
        fd, ofd, path = self._fd_fid(call.args[0])
        if fd in self.ack_fds:
            self._ack(call, data[: call.ret])
            return
        if ofd is None:
            if path is not None and self._rel(path) is not None:
                raise TraceError(f"{call.name} to {path} through an fd opened before tracing")
            return
        data = data[: call.ret]
        if offset is None:
            if ofd.append:
                offset = len(self.data.get(ofd.fid, b""))
            else:
                offset = ofd.pos
                ofd.pos += len(data)
        self._write(call, ofd.fid, offset, data)

    def _ack(self, call: Call, data: bytes) -> None:
        for line in data.decode().splitlines():
            obj = json.loads(line)
            payloads = tuple(obj["payloads"])
            self._emit(call, Ack(tuple(obj["seqs"]), payloads))

    def _c_write(self, call: Call) -> None:
        self._data_call(call, string_arg(call.args[1]), None)

    def _c_pwrite64(self, call: Call) -> None:
        self._data_call(call, string_arg(call.args[1]), int_arg(call.args[3]))

    def _c_writev(self, call: Call) -> None:
        self._data_call(call, iov_arg(call.args[1]), None)

    def _c_pwritev(self, call: Call) -> None:
        offset = int_arg(call.args[3])
        self._data_call(call, iov_arg(call.args[1]), None if offset == -1 else offset)

    _c_pwritev2 = _c_pwritev

    def _c_ftruncate(self, call: Call) -> None:
        _, ofd, _ = self._fd_fid(call.args[0])
        if ofd is not None:
            self._truncate(call, ofd.fid, int_arg(call.args[1]))

    def _c_truncate(self, call: Call) -> None:
        rel = self._rel(self._at("-100", call.args[0]))
        fid = self._lookup(rel) if rel is not None else None
        if fid is not None:
            self._truncate(call, fid, int_arg(call.args[1]))

    def _c_fsync(self, call: Call) -> None:
        _, ofd, _ = self._fd_fid(call.args[0])
        if ofd is not None:
            self._emit(call, Sync(ofd.fid))

    _c_fdatasync = _c_fsync

    def _c_sync(self, call: Call) -> None:
        self._emit(call, SyncAll())

    def _c_syncfs(self, call: Call) -> None:
        _, ofd, path = self._fd_fid(call.args[0])
        if ofd is not None or (path is not None and self._rel(path) is not None):
            self._emit(call, SyncAll())

    def _mkdir(self, call: Call, path: str) -> None:
        rel = self._rel(path)
        if rel:
            self._new_name(call, rel, is_dir=True)

    def _c_mkdir(self, call: Call) -> None:
        self._mkdir(call, self._at("-100", call.args[0]))

    def _c_mkdirat(self, call: Call) -> None:
        self._mkdir(call, self._at(call.args[0], call.args[1]))

    def _unlink(self, call: Call, path: str) -> None:
        rel = self._rel(path)
        if not rel:
            return
        parent, name = self._parent(rel)
        fid = self.entries[parent].pop(name, None)
        if fid is not None:
            self._emit(call, Unlink(parent, name))

    def _c_unlink(self, call: Call) -> None:
        self._unlink(call, self._at("-100", call.args[0]))

    _c_rmdir = _c_unlink

    def _c_unlinkat(self, call: Call) -> None:
        self._unlink(call, self._at(call.args[0], call.args[1]))

    def _rename(self, call: Call, src: str, dst: str) -> None:
        rs, rd = self._rel(src), self._rel(dst)
        if rs is None and rd is None:
            return
        if not rs or not rd:
            raise TraceError(f"rename into or out of the traced root: {src} -> {dst}")
        ps, ns = self._parent(rs)
        pd, nd = self._parent(rd)
        if ps != pd:
            raise TraceError(f"rename across directories is not modelled: {rs} -> {rd}")
        fid = self.entries[ps].pop(ns)
        self.entries[pd][nd] = fid
        self.names[fid] = rd
        self._emit(call, Rename(ps, ns, nd))

    def _c_rename(self, call: Call) -> None:
        self._rename(call, self._at("-100", call.args[0]), self._at("-100", call.args[1]))

    def _c_renameat(self, call: Call) -> None:
        a = call.args
        self._rename(call, self._at(a[0], a[1]), self._at(a[2], a[3]))

    def _c_renameat2(self, call: Call) -> None:
        if len(call.args) > 4 and int_arg(call.args[4]) & 2:  # RENAME_EXCHANGE
            raise TraceError("renameat2(RENAME_EXCHANGE) is not modelled")
        self._c_renameat(call)

    def _link(self, call: Call, src: str, dst: str) -> None:
        rs, rd = self._rel(src), self._rel(dst)
        if rd is None:
            return
        fid = self._lookup(rs) if rs is not None else None
        if fid is None:
            raise TraceError(f"link from outside the modelled tree: {src} -> {dst}")
        parent, name = self._parent(rd)
        self.entries[parent][name] = fid
        self._emit(call, Link(parent, name, fid))

    def _c_link(self, call: Call) -> None:
        self._link(call, self._at("-100", call.args[0]), self._at("-100", call.args[1]))

    def _c_linkat(self, call: Call) -> None:
        a = call.args
        self._link(call, self._at(a[0], a[1]), self._at(a[2], a[3]))

    def _refuse(self, call: Call) -> None:
        raise TraceError(f"{call.name} under the traced root is not modelled")

    _c_symlink = _refuse
    _c_symlinkat = _refuse
    _c_fallocate = _refuse


def parse_trace(
    trace_file: str,
    root: str,
    *,
    ack_file: str | None = None,
    initial: Image | None = None,
    paths: dict[str, int] | None = None,
) -> Trace:
    """Parse ``strace_command``'s output into the operations under ``root``.

    ``initial`` is the tree as it was when tracing started (default: an
    empty root), with ``paths`` naming its fids; writes to ``ack_file``
    become Ack events (one per JSON line).
    """
    image = initial if initial is not None else Image.empty()
    parser = _Parser(root, ack_file, image, paths if paths is not None else {"": ROOT_FID})
    keep = [hexed(parser.root)]
    if parser.ack_file is not None:
        keep.append(hexed(parser.ack_file))
    try:
        with open(trace_file, encoding="ascii", errors="replace") as f:
            for call in calls(f, keep):
                parser.feed(call)
    except StraceFormatError as exc:
        raise TraceError(str(exc)) from None
    return Trace(
        parser.root,
        tuple(parser.events),
        image,
        dict(parser.names),
        frozenset(parser.dirs),
        tuple(parser.notes),
    )
