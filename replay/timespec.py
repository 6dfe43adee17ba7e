"""Points in a log's history, as people write them and as the API takes them.

A point is either a sequence number (exact, what scripts and ``verify`` speak)
or a wall-clock time (what an auditor remembers: "before the crash at 14:02").
Times on the command line come in three spellings, as in ``kubectl``/``journalctl``:

    RFC 3339         2024-05-01T14:02:00Z, 2024-05-01T14:02:00.5+02:00
    unix seconds     1714572120 or 1714572120.25 (or @1714572120, as date(1) writes it)
    relative         10m, 90s, 2h, 1d, 1h30m: that long before now

Where a bare integer could be either (``diff A B``, ``history``), it is a seq;
a unix time there is written ``@SECONDS``.

Record times are the writer's wall clock per record (``time_ns``); a time
point means "the state after the longest prefix of the log whose records are
all at or before that time", so a clock step backwards cannot reorder history.

Every parsed value is bounded before it is converted: a time lies between
the epoch and the end of year 9999 (``MIN_TIME_NS``..``MAX_TIME_NS``, what
``format_time`` can print), a seq is a u64 as the record header stores it,
and a number is never handed to ``int()`` with more digits than those
bounds need - 5,000 digits would hit Python's int-string limit, a year
10000 datetime's range, a 1e400 duration float infinity. Each is a
``TimeSpecError`` (exit 7), never a crash.
"""

from __future__ import annotations

import datetime as dt
import re
import time

import attrs

_RFC3339_RE = re.compile(
    r"^(\d{4}-\d\d-\d\d(?:[Tt ]\d\d:\d\d(?::\d\d)?)?)(\.\d{1,9})?([Zz]|[+-]\d\d:?\d\d)?$",
    re.ASCII,
)
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|us|ns|s|m|h|d|w)", re.ASCII)
_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
    "w": 7 * 86_400_000_000_000,
}

TimeLike = int | dt.datetime

#: The times a point may name: from the epoch (record times are u64 ns) to
#: the last nanosecond of year 9999 (the last ``format_time`` can print).
MIN_TIME_NS = 0
MAX_TIME_NS = 253_402_300_800 * 1_000_000_000 - 1
#: The largest seq a record header can hold (u64).
MAX_SEQ = 2**64 - 1
_TIME_RANGE = "1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z"


class TimeSpecError(ValueError):
    """A time or point the user wrote that cannot be understood."""


def parse_duration_ns(text: str) -> int:
    """``10m`` -> 600e9. Units ns, us, ms, s, m, h, d, w; may be chained (``1h30m``)."""
    text = text.strip()
    pos = 0
    total = 0.0
    for match in _DURATION_RE.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_NS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise TimeSpecError(f"not a duration: {_show(text)} (expected e.g. 90s, 10m, 2h, 1h30m)")
    # float() of a long digit string is inf, not an error; no duration past
    # the range of times can name a point anyway.
    if not total <= MAX_TIME_NS:
        raise TimeSpecError(f"duration {_show(text)} is out of range (at most 10,000 years)")
    return int(total)


def _show(text: str, limit: int = 40) -> str:
    """``text`` quoted for an error line, cut to ``limit`` characters (a 5,000-digit
    number in the message would still be one line, but an unreadable one)."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} chars)"


def check_time_ns(ns: int, text: str) -> int:
    """``ns`` if it lies in ``MIN_TIME_NS..MAX_TIME_NS``, else a ``TimeSpecError``."""
    if not MIN_TIME_NS <= ns <= MAX_TIME_NS:
        raise TimeSpecError(f"time {_show(text)} is out of range ({_TIME_RANGE})")
    return ns


def parse_seq(text: str) -> int:
    """A seq written as a decimal number: 0..``MAX_SEQ``, its digits bounded before
    ``int()`` (5,000 digits are an out-of-range seq, not a ValueError)."""
    raw = text.strip()
    if not raw.isascii() or not raw.isdigit():
        raise TimeSpecError(f"not a seq number: {_show(text)}")
    digits = raw.lstrip("0") or "0"
    if len(digits) > len(str(MAX_SEQ)) or int(digits) > MAX_SEQ:
        raise TimeSpecError(f"seq {_show(text)} is out of range (0 to {MAX_SEQ})")
    return int(digits)


def datetime_to_ns(value: dt.datetime) -> int:
    """A datetime as ns since the epoch; a naive one is taken as local time."""
    if value.tzinfo is None:
        value = value.astimezone()
    delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def to_ns(value: TimeLike) -> int:
    """The API's time argument (int ns or datetime) as int ns."""
    if isinstance(value, dt.datetime):
        return datetime_to_ns(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"a time is an int (ns since the epoch) or a datetime, not {value!r}")
    return value


def parse_time(text: str, *, now_ns: int | None = None) -> int:
    """A command-line time (RFC 3339, unix seconds, ``@seconds`` or relative) as ns."""
    raw = text.strip()
    if not raw:
        raise TimeSpecError("empty time")
    body = raw[1:] if raw.startswith("@") else raw
    if re.fullmatch(r"\d+(\.\d+)?", body, flags=re.ASCII):
        whole, _, frac = body.partition(".")
        whole = whole.lstrip("0") or "0"
        if len(whole) > len(str(MAX_TIME_NS // 1_000_000_000)):
            raise TimeSpecError(f"time {_show(text)} is out of range ({_TIME_RANGE})")
        ns = int(whole) * 1_000_000_000 + int((frac + "000000000")[:9] or 0)
        return check_time_ns(ns, text)
    if not raw.startswith("@") and _DURATION_RE.match(raw):
        try:
            ago = parse_duration_ns(raw)
        except TimeSpecError:
            pass
        else:
            return check_time_ns((time.time_ns() if now_ns is None else now_ns) - ago, text)
    # RFC 3339 with up to nanoseconds (datetime keeps only microseconds, and a
    # time copied from `sandboxctl log` must name that very record).
    m = _RFC3339_RE.match(raw)
    if m is not None:
        base, frac, zone = m.group(1), m.group(2) or "", m.group(3) or ""
        if zone in ("Z", "z"):
            zone = "+00:00"
        try:
            parsed = dt.datetime.fromisoformat(base.replace(" ", "T") + zone)
            ns = datetime_to_ns(parsed)
        except (ValueError, OverflowError):
            # Not a date, or a local time in year 1 or 9999 the zone pushes
            # out of datetime's range.
            parsed = None
        if parsed is not None:
            return check_time_ns(ns + int((frac[1:] + "000000000")[:9]), text)
    raise TimeSpecError(
        f"not a time: {_show(text)} (expected RFC 3339 like 2024-05-01T14:02:00Z, "
        "unix seconds, or a relative time like 10m)"
    )


def format_time(ns: int | None) -> str:
    """RFC 3339 in UTC to the nanosecond (a record's exact time: pasting it into
    ``--at`` or ``--until`` includes that record); ``""`` for no time."""
    if ns is None:
        return ""
    stamp = dt.datetime.fromtimestamp(ns // 1_000_000_000, tz=dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 1_000_000_000:09d}Z"


@attrs.frozen
class Point:
    """A place in the log's history: after event ``seq``, or as of wall time ``at`` (ns)."""

    seq: int | None = None
    at: int | None = None

    def __attrs_post_init__(self) -> None:
        if (self.seq is None) == (self.at is None):
            raise ValueError("a Point has exactly one of seq and at")
        if self.seq is not None and self.seq < 0:
            raise ValueError(f"a seq is >= 0, got {self.seq}")

    def __str__(self) -> str:
        return f"seq {self.seq}" if self.seq is not None else f"time {format_time(self.at)}"

    @classmethod
    def of(cls, value: Point | int | dt.datetime) -> Point:
        """An int is a seq; a datetime is a time (use ``Point(at=ns)`` for ns)."""
        if isinstance(value, Point):
            return value
        if isinstance(value, dt.datetime):
            return cls(at=datetime_to_ns(value))
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"a point is a seq (int), a datetime or a Point, not {value!r}")
        return cls(seq=value)


def parse_point(text: str, *, now_ns: int | None = None) -> Point:
    """A command-line point: a bare integer is a seq, anything else a time."""
    raw = text.strip()
    if re.fullmatch(r"\d+", raw, flags=re.ASCII):
        return Point(seq=parse_seq(raw))
    return Point(at=parse_time(raw, now_ns=now_ns))


def human_duration(seconds: float) -> str:
    """How long ago, in the words ``crictl pods`` uses (Docker's go-units thresholds)."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def ago(ns: int, *, now_ns: int | None = None) -> str:
    """``"2 minutes ago"`` for a past time in ns."""
    now = time.time_ns() if now_ns is None else now_ns
    return human_duration(max(0, now - ns) / 1e9) + " ago"
