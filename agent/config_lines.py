"""The line of every table and key in a TOML text, for config messages that name a line.

tomllib reports no line numbers for values, so `scan_lines` walks the TOML source once and records the
line of every table header (`[broker]`, each `[[devices]]`) and key. It reads what a human writes in a
config file; a value spanning lines (an array, an inline table, a multi-line string) is skipped over
so that nothing inside it is taken for a key.
"""

from __future__ import annotations

import re

__all__ = ["scan_lines"]

_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')"""
_KEY_RE = re.compile(r"^\s*(%s(?:\s*\.\s*%s)*)\s*=" % (_KEY_PART, _KEY_PART))


def _split_dotted(text: str) -> list[str]:
    parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", text)
    return [p[1:-1] if p[:1] in "\"'" else p for p in parts]


def _value_state(text: str, depth: int) -> tuple[int, str | None]:
    """Bracket depth after `text` and an unterminated multi-line string opener, if any."""
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "#":
            break
        if text.startswith('"""', i) or text.startswith("'''", i):
            quote = text[i:i + 3]
            end = text.find(quote, i + 3)
            if end < 0:
                return depth, quote
            i = end + 3
            continue
        if ch in "\"'":
            j = i + 1
            while j < n and text[j] != ch:
                j += 2 if (ch == '"' and text[j] == "\\") else 1
            i = j + 1
            continue
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        i += 1
    return depth, None


def scan_lines(text: str) -> dict[tuple, int]:
    """Map TOML paths to the line they start on.

    Paths are tuples of keys and array indexes: ("broker",), ("buses", 0), ("buses", 0, "baud"),
    ("devices", 2, "options", "max_gap"). Only what a human wrote on a line of its own is mapped
    (keys inside inline tables are found through their parent key).
    """
    lines: dict[tuple, int] = {}
    arrays: dict[tuple, int] = {}
    current: tuple = ()
    depth = 0
    open_string: str | None = None

    def resolve(names: list[str]) -> tuple:
        path: tuple = ()
        for name in names:
            path = (*path, name)
            if path in arrays:
                path = (*path, arrays[path])
        return path

    for number, raw in enumerate(text.splitlines(), 1):
        line = raw
        if open_string is not None:
            end = line.find(open_string)
            if end < 0:
                continue
            line = line[end + 3:]
            open_string = None
            depth, open_string = _value_state(line, depth)
            continue
        if depth > 0:
            depth, open_string = _value_state(line, depth)
            continue
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("[["):
            end = stripped.find("]]")
            names = _split_dotted(stripped[2:end])
            if not names:
                continue
            parent = resolve(names[:-1])
            key = (*parent, names[-1])
            arrays[key] = arrays.get(key, -1) + 1
            current = (*key, arrays[key])
            lines.setdefault(current, number)
            lines.setdefault(key, number)
            continue
        if stripped.startswith("["):
            end = stripped.find("]")
            current = resolve(_split_dotted(stripped[1:end]))
            lines.setdefault(current, number)
            continue
        match = _KEY_RE.match(line)
        if match:
            path = (*current, *_split_dotted(match.group(1)))
            lines.setdefault(path, number)
            depth, open_string = _value_state(line[match.end():], 0)
    return lines
