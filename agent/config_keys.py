"""How one config key is checked: the issue it raises, where, and what each key accepts.

A `Checker` collects every problem of one file as a `ConfigIssue` (file, line, key, expectation)
rather than stopping at the first. A key spec is (expectation text, check) where check returns the
value to keep or raises ValueError; `fill` checks a whole table against a dict of specs.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from protocols.profiles import valid_name

__all__ = [
    "Checker",
    "ConfigIssue",
    "Spec",
    "boolean",
    "choice",
    "closest",
    "fill",
    "integer",
    "is_int",
    "name",
    "number",
    "resolve_path",
    "show",
    "str_list",
    "string",
    "topic_prefix",
]


@dataclass(frozen=True)
class ConfigIssue:
    """One problem: where (file, line, key) and what was expected."""

    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        return "%s:%d: %s: %s" % (self.file, self.line, self.key or "(file)", self.message)


def path_text(path: tuple) -> str:
    """A path as written in messages: ("devices", 2, "interval") -> devices[2].interval."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += "[%d]" % part
        else:
            out += ("." if out else "") + part
    return out


def show(value: object) -> str:
    """A value as a message shows what was found: TOML spelling, tables and lists by kind."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"%s"' % value
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def closest(word: str, choices: list[str], cutoff: float = 0.6) -> str | None:
    """The choice nearest to a misspelt `word`, if one is near enough."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=cutoff)
    return close[0] if close else None


def resolve_path(base_dir: str, path: str) -> str:
    """A path from the config file: `~` expanded, relative to the file's folder."""
    path = os.path.expanduser(path)
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base_dir, path))


class Checker:
    """Collects the errors and warnings of one config file, each at the line of its key."""

    def __init__(self, file: str, lines: dict[tuple, int]) -> None:
        self.file = file
        self.lines = lines
        self.issues: list[ConfigIssue] = []
        self.warnings: list[ConfigIssue] = []
        self.bad_links: set[str] = set()  # buses whose line settings are already errors

    def line_of(self, path: tuple) -> int:
        """The line of `path`, else of its nearest parent written in the file, else 1."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return 1

    def error(self, path: tuple, message: str) -> None:
        self.issues.append(ConfigIssue(self.file, self.line_of(path), path_text(path), message))

    def warn(self, path: tuple, message: str) -> None:
        self.warnings.append(ConfigIssue(self.file, self.line_of(path), path_text(path), message))

    def unknown_keys(self, table: dict, path: tuple, known: tuple | list) -> None:
        """An error for each key of `table` not in `known`, with the closest known key."""
        for key in table:
            if key in known:
                continue
            close = closest(key, list(known))
            hint = 'did you mean "%s"? ' % close if close else ""
            self.error((*path, key), "unknown key; %sexpected one of: %s" % (hint, ", ".join(known)))

    def table(self, data: dict, key: str, path: tuple = ()) -> dict:
        """The table `[key]` of `data` ({} when absent, or after an error when not a table)."""
        value = data.get(key, {})
        if not isinstance(value, dict):
            self.error((*path, key), "expected a table [%s], got %s" % (key, show(value)))
            return {}
        return value

    def tables(self, value: object, key: str) -> Iterator[tuple[tuple, dict]]:
        """(path, table) for each `[[key]]` table in `value`; an error for anything else."""
        if not isinstance(value, list):
            self.error((key,), "expected [[%s]] tables, got %s" % (key, show(value)))
            return
        for i, item in enumerate(value):
            path = (key, i)
            if not isinstance(item, dict):
                self.error(path, "expected a [[%s]] table" % key)
                continue
            yield path, item

    def unique(self, seen: dict[str, int], path: tuple, kind: str, key: str, value: str) -> bool:
        """False, after an error naming the first one's line, when `value` of `key` is in `seen`."""
        if value in seen:
            self.error((*path, key), '%s "%s" is already defined at line %d; expected a unique %s'
                       % (kind, value, seen[value], key))
            return False
        seen[value] = self.line_of(path)
        return True


# A key spec: (expectation text, check(value) -> normalised value or raise ValueError)
Spec = tuple[str, Callable[[Any], Any]]


def is_int(v: object) -> bool:
    """An integer and not a bool (TOML true is no number)."""
    return isinstance(v, int) and not isinstance(v, bool)


def _where(text: str, test: Callable[[Any], bool]) -> Spec:
    """A spec that keeps a value as it is when `test` accepts it."""
    def check(v: Any) -> Any:
        if not test(v):
            raise ValueError
        return v

    return text, check


def integer(low: int, high: int | None = None) -> Spec:
    text = "an integer %d..%d" % (low, high) if high is not None else "an integer >= %d" % low

    def check(v: Any) -> int:
        if not is_int(v) or v < low or (high is not None and v > high):
            raise ValueError
        return int(v)

    return text, check


def number(low: float, high: float | None = None, strict: bool = False) -> Spec:
    if high is None:
        text = "a number %s %g" % (">" if strict else ">=", low)
    else:
        text = "a number %g..%g" % (low, high)

    def check(v: Any) -> float:
        if not (is_int(v) or isinstance(v, float)) or v < low or (strict and v == low) \
                or (high is not None and v > high):
            raise ValueError
        return v

    return text, check


def string(nonempty: bool = True) -> Spec:
    return _where("a non-empty string" if nonempty else "a string",
                  lambda v: isinstance(v, str) and not (nonempty and not v.strip()))


def name() -> Spec:
    return _where("a name of letters, digits, _ - . (not starting with _ - .), at most 64 characters",
                  valid_name)


def choice(*choices: object, upper: bool = False) -> Spec:
    def check(v: Any) -> Any:
        if upper and isinstance(v, str):
            v = v.upper()
        if isinstance(v, bool) or v not in choices:
            raise ValueError
        return v

    return "one of %s" % ", ".join(show(c) for c in choices), check


def boolean() -> Spec:
    return _where("true or false", lambda v: isinstance(v, bool))


def str_list() -> Spec:
    text, check = _where("a list of strings",
                         lambda v: isinstance(v, list) and all(isinstance(x, str) and x for x in v))
    return text, lambda v: list(check(v))


def topic_prefix() -> Spec:
    return _where("a topic prefix without + # spaces or leading/trailing /",
                  lambda v: isinstance(v, str) and bool(v) and not any(c in v for c in "+# ")
                  and not v.startswith("/") and not v.endswith("/"))


def fill(ck: Checker, table: dict, path: tuple, specs: dict[str, Spec], required: tuple = (),
         skip: tuple = ()) -> dict[str, Any]:
    """Check the keys of one table against `specs`; return the good values."""
    ck.unknown_keys(table, path, [*specs, *skip])
    out: dict[str, Any] = {}
    for key in required:
        if key not in table:
            ck.error((*path, key), "missing; expected %s" % specs[key][0])
    for key, value in table.items():
        if key not in specs:
            continue
        text, check = specs[key]
        try:
            out[key] = check(value)
        except ValueError:
            ck.error((*path, key), "expected %s, got %s" % (text, show(value)))
    return out
