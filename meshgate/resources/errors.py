"""Validation errors with Kuma-style field paths.

Error tree of `meshgate.resources`::

    MeshgateResourceError
    ├── ValidationError        one or more Violations (field path + message); the resource is rejected
    └── UnknownKindError       a kind name that no descriptor declares
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = [
    "MeshgateResourceError",
    "Path",
    "UnknownKindError",
    "ValidationError",
    "Violation",
    "Violations",
    "go_quote",
]

_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def go_quote(text: str) -> str:
    """Go's `%q` (strconv.Quote), which Kuma uses for map keys in paths and for names in messages."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        # Nothing to escape (the common case, one C call): every map key of every resource comes through here.
        return f'"{text}"'
    out = ['"']
    for char in text:
        code = ord(char)
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif char.isprintable():
            # Python's and Go's "printable" agree: letters, marks, numbers, punctuation, symbols and ASCII space.
            out.append(char)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Violation:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class Path:
    """Builds Kuma-style paths: `conf.listeners[0].port`, `selectors[0].match["kuma.io/service"]`."""

    __slots__ = ("_text",)

    def __init__(self, text: str = "") -> None:
        self._text = text

    def field(self, name: str) -> Path:
        return Path(f"{self._text}.{name}" if self._text else name)

    def index(self, i: int) -> Path:
        return Path(f"{self._text}[{i}]")

    def key(self, k: str) -> Path:
        return Path(f"{self._text}[{go_quote(k)}]")

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"Path({self._text!r})"


class Violations:
    """An accumulator: validators add every violation they find, never stopping at the first."""

    def __init__(self) -> None:
        self._items: list[Violation] = []

    def add(self, path: Path | str, message: str) -> None:
        self._items.append(Violation(str(path), message))

    def extend(self, items: Iterable[Violation]) -> None:
        self._items.extend(items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __iter__(self) -> Iterator[Violation]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def as_list(self) -> list[Violation]:
        return list(self._items)

    def raise_if_any(self, title: str = "Resource is not valid") -> None:
        if self._items:
            raise ValidationError(self._items, title)


class MeshgateResourceError(Exception):
    pass


class ValidationError(MeshgateResourceError):
    def __init__(self, violations: Iterable[Violation], title: str = "Resource is not valid") -> None:
        self.violations = list(violations)
        self.title = title
        super().__init__(f"{title}: " + "; ".join(str(v) for v in self.violations))


class UnknownKindError(MeshgateResourceError):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        super().__init__(f"unknown resource kind {kind!r}")
