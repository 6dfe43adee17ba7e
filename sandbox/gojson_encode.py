"""Go's ``json.Marshal``, for the value shapes ``sandbox.gojson`` encodes (re-exported
there as ``go_json_dumps``): compact, keys in the given order, HTML characters escaped
as ``\\u003c`` etc., non-ASCII kept as UTF-8.
"""

from __future__ import annotations

import re

__all__ = ["go_json_dumps"]


# -- Go's json.Marshal, for the value shapes used here ---------------------------------

# Go escapes '"', '\\', control characters (\n \r \t short, the rest as
# \u00XX - including \b and \f, which Go before 1.22 wrote as \u0008/\u000c,
# as the containerd builds that wrote these blobs did), the HTML-sensitive
# '<', '>', '&', and U+2028/U+2029. Everything else is written as UTF-8.
_GO_ESCAPE_RE = re.compile('["\\\\\x00-\x1f<>&\u2028\u2029\ud800-\udfff]')
_GO_SHORT = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _go_escape_char(match: re.Match[str]) -> str:
    ch = match.group()
    short = _GO_SHORT.get(ch)
    if short is not None:
        return short
    if "\ud800" <= ch <= "\udfff":
        return "\ufffd"  # Go replaces invalid UTF-8 with U+FFFD
    return f"\\u{ord(ch):04x}"


def _go_str(value: str) -> str:
    return '"' + _GO_ESCAPE_RE.sub(_go_escape_char, value) + '"'


def _go_encode(value: object, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(_go_str(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(int(value)))
    elif isinstance(value, dict):
        out.append("{")
        first = True
        for key, item in value.items():
            if not first:
                out.append(",")
            first = False
            out.append(_go_str(str(key)))
            out.append(":")
            _go_encode(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _go_encode(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as Go JSON")


def go_json_dumps(value: object) -> bytes:
    """Encode as Go's ``json.Marshal`` does: compact, keys in the given order,
    HTML characters escaped as ``\\u003c`` etc., non-ASCII kept as UTF-8."""
    out: list[str] = []
    _go_encode(value, out)
    return "".join(out).encode("utf-8")
