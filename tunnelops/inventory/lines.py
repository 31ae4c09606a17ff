"""Where in a site file a problem is: the line of a table, a key in it, or a value of that
key (a port in a multi-line array), found by scanning the text as tomllib counts lines."""

from __future__ import annotations

import dataclasses
import re


@dataclasses.dataclass(frozen=True)
class Loc:
    """Where a problem is: table ('' for top level), AoT index, key, and a value to find."""

    table: str
    index: int | None = None
    key: str | None = None
    needle: str | None = None

    @property
    def label(self) -> str:
        text = f"[{self.table}]" if self.table else "(top level)"
        return f"{text} {self.key!r}" if self.key else text




_NAME = r"[A-Za-z0-9_-]+"
_HEADER_RE = re.compile(
    rf"[ \t]*(\[\[?)[ \t]*({_NAME}(?:[ \t]*\.[ \t]*{_NAME})*)[ \t]*(\]\]?)[ \t]*(?:#.*)?"
)


def _key_re(key: str) -> re.Pattern[str]:
    k = re.escape(key)
    return re.compile(rf"[ \t]*(?:{k}|\"{k}\"|'{k}')[ \t]*[=.]")


def _bracket_delta(line: str) -> int:
    """Net '[' minus ']' outside strings and comments, to follow a multi-line array."""
    depth, quote, i = 0, "", 0
    while i < len(line):
        ch = line[i]
        if quote:
            if ch == "\\" and quote == '"':
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        i += 1
    return depth


def _find_needle(lines: list[str], key_line: int, needle: str) -> int | None:
    literals = (f'"{needle}"', f"'{needle}'", needle)
    depth = 0
    for number in range(key_line, len(lines) + 1):
        line = lines[number - 1]
        if any(lit in line for lit in literals):
            return number
        depth += _bracket_delta(line if number > key_line else line.partition("=")[2])
        if depth <= 0:
            return None
    return None


def locate(text: str, loc: Loc) -> int:
    """1-based line of loc in text: the value, else the key, else the table header, else 1.
    Lines are counted on '\\n' only, as tomllib counts them."""
    lines = text.split("\n")
    key_re = _key_re(loc.key) if loc.key else None
    table_re = _key_re(loc.table) if loc.table else None
    current: tuple[str, int | None] = ("", None)
    seen_aot: dict[str, int] = {}
    table_line: int | None = None
    for number, line in enumerate(lines, 1):
        header = _HEADER_RE.fullmatch(line)
        if header and (header.group(1) == "[[") == (header.group(3) == "]]"):
            name = re.sub(r"[ \t]", "", header.group(2))
            index = None
            if header.group(1) == "[[":
                index = seen_aot[name] = seen_aot.get(name, -1) + 1
            current = (name, index)
            if table_line is None and name == loc.table and loc.index in (None, index):
                table_line = number
                if key_re is None:
                    return number
            continue
        in_target = current[0] == loc.table and loc.index in (None, current[1])
        if in_target and key_re is not None and key_re.match(line):
            if loc.needle is not None:
                found = _find_needle(lines, number, loc.needle)
                if found is not None:
                    return found
            return number
        # A table written as a top-level inline table or dotted key: `vps = {...}`.
        if table_re and current == ("", None) and table_line is None and table_re.match(line):
            table_line = number
    return table_line or 1

