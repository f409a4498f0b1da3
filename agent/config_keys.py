"""How one config key is checked: the issue it raises, where, and what each key accepts.

A `Checker` collects every problem of one file as a `ConfigIssue` (file, line, key, expectation)
rather than stopping at the first. A key spec is (expectation text, check) where check returns the
value to keep or raises ValueError (its text, if any, says why); `fill` checks a whole table against a
dict of specs.

Secrets: the keys in `SECRET_KEYS` never have their value in a message. `fill` says only what kind of
value it found, and `Checker` scrubs the text of every secret in the file from every issue it records,
so a check written later cannot leak one either.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from protocols.profiles import valid_name

__all__ = [
    "SECRET_KEYS",
    "Checker",
    "ConfigIssue",
    "Spec",
    "boolean",
    "choice",
    "closest",
    "fill",
    "integer",
    "is_int",
    "is_secret",
    "name",
    "number",
    "resolve_path",
    "show",
    "str_list",
    "string",
    "topic_level",
    "topic_prefix",
]

#: config keys whose values are secrets ("*" stands for any index of an array of tables)
SECRET_KEYS: tuple[tuple, ...] = (
    ("broker", "password"),
    ("broker", "endpoints", "*", "password"),
    ("devices", "*", "options", "password"),  # DL/T 645 meter password (PA P0 P1 P2)
)
NOT_SHOWN = "(a secret: its value is not shown)"


def is_secret(path: tuple) -> bool:
    """True when `path` (such as ("devices", 3, "options", "password")) names a secret key."""
    for pattern in SECRET_KEYS:
        if len(pattern) == len(path) and all((p == "*" and isinstance(k, int)) or p == k
                                             for p, k in zip(pattern, path, strict=True)):
            return True
    return False


def _secret_values(data: dict) -> list[object]:
    """The values written at every secret key of a parsed config."""
    found: list[object] = []

    def walk(node: object, pattern: tuple) -> None:
        if not pattern:
            found.append(node)
            return
        head, rest = pattern[0], pattern[1:]
        if head == "*":
            for item in node if isinstance(node, list) else []:
                walk(item, rest)
        elif isinstance(node, dict) and head in node:
            walk(node[head], rest)

    for pattern in SECRET_KEYS:
        walk(data, pattern)
    return found


def kind_of(value: object) -> str:
    """What a value is, without its content: for messages about secrets."""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, str):
        return "a string of %d characters" % len(value)
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return "a %s" % type(value).__name__


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
    """A value as a message shows what was found: TOML spelling (control characters escaped), tables and
    lists by kind."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"%s"' % "".join(c if c.isprintable() else "\\u%04x" % ord(c) for c in value)
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

    def __init__(self, file: str, lines: dict[tuple, int], data: dict | None = None) -> None:
        self.file = file
        self.lines = lines
        self._secrets = _scrub_forms(_secret_values(data or {}))
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
        self.issues.append(ConfigIssue(self.file, self.line_of(path), path_text(path), self._scrub(message)))

    def warn(self, path: tuple, message: str) -> None:
        issue = ConfigIssue(self.file, self.line_of(path), path_text(path), self._scrub(message))
        self.warnings.append(issue)

    def _scrub(self, message: str) -> str:
        for text in self._secrets:
            message = message.replace(text, NOT_SHOWN)
        return message

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
    """A finite number in range: nan and inf are refused everywhere (`nan < 1` is False, so an unchecked
    nan interval passes every bound and polls once; an inf one never)."""
    if high is None:
        text = "a number %s %g" % (">" if strict else ">=", low)
    else:
        text = "a number %g..%g" % (low, high)

    def check(v: Any) -> float:
        if isinstance(v, float) and math.isnan(v):
            raise ValueError("nan is not a number")
        if isinstance(v, float) and math.isinf(v):
            raise ValueError("an infinite value is not allowed")
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


def topic_level(text: str, what: str = "topic level") -> None:
    """ValueError saying why `text` cannot be one level of an MQTT topic the agent publishes on."""
    if not text:
        raise ValueError("an empty %s (two / in a row, or a / at the start or end)" % what)
    for bad, why in (("+", "a wildcard"), ("#", "a wildcard"), ("\x00", "NUL"), (" ", "a space")):
        if bad in text:
            raise ValueError("%s %s holds %s (%r)" % (what, show(text), why, bad))
    for c in text:
        if not c.isprintable():
            raise ValueError("%s %s holds a control character (U+%04X)" % (what, show(text), ord(c)))


def topic_prefix() -> Spec:
    """`<prefix>` of `<prefix>/<site>/<gateway>/…`: levels joined by /, none empty or with a wildcard, NUL,
    space or control character, and not starting with $ (brokers keep $-topics such as $SYS for
    themselves and drop what clients publish there)."""
    def check(v: Any) -> str:
        if not isinstance(v, str):
            raise ValueError
        if v.startswith("$"):
            raise ValueError("a topic starting with $ is the broker's own ($SYS): brokers drop what clients "
                             "publish there, so every reading would be lost")
        if len(v.encode()) > 200:
            raise ValueError("longer than 200 bytes")
        for level in v.split("/"):
            topic_level(level, "prefix level")
        return v

    return "a topic prefix of levels joined by / (such as \"fieldlink\" or \"city/north\")", check


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
        except ValueError as exc:
            got = kind_of(value) if is_secret((*path, key)) else show(value)
            why = " (%s)" % exc if exc.args and not is_secret((*path, key)) else ""
            ck.error((*path, key), "expected %s, got %s%s" % (text, got, why))
    return out


def _scrub_forms(values: list[object]) -> list[str]:
    """The texts a secret could appear as in a message, longest first. Short plain forms are left out
    (scrubbing "ab" would mangle every word); their quoted forms are scrubbed all the same."""
    forms: set[str] = set()
    leaves: list[object] = []

    def collect(v: object) -> None:
        if isinstance(v, dict):
            for item in v.values():
                collect(item)
        elif isinstance(v, list):
            for item in v:
                collect(item)
        else:
            leaves.append(v)

    for value in values:
        collect(value)
    for leaf in leaves:
        for form in (show(leaf), repr(leaf), '"%s"' % leaf):
            forms.add(form)
        if len(str(leaf)) >= 4:
            forms.add(str(leaf))
    return sorted(forms, key=len, reverse=True)
