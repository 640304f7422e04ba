"""User-controlled text made safe for where it lands in GitHub Markdown, and lists shortened
to fit a size.

Each escaping function shows its input as text: on one line, with no HTML, no comment that would
hide what follows or forge stackward's marker, no @mention or #reference that would notify
anyone, no Markdown link or image (GitHub still links a bare URL), and nothing that closes the
construct the text sits in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import accumulate
from string import Template
from urllib.parse import quote

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
"""Control, line-separator and bidirectional-override characters: none is shown as it is."""

ZWSP = "\u200b"  # after `@` and before a digit after `#`: GitHub links neither, and it is invisible
_ESCAPES = str.maketrans(
    {
        "\\": "\\\\",
        "`": "\\`",
        "*": "\\*",
        "_": "\\_",
        "~": "\\~",
        "[": "\\[",
        "]": "\\]",
        "|": "\\|",
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        "@": "@" + ZWSP,
    }
)
_HTML = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "@": "@" + ZWSP})
_REFERENCE = re.compile(r"#(?=\d)")
_BACKTICKS = re.compile(r"`+")
_BLOCK_START = re.compile(r"[#+-]|\d{1,9}[.)]")


def one_line(value: str) -> str:
    """`value` with every control, line-break and bidi character turned into a space."""
    return CONTROL.sub(" ", value)


def shorten(value: str, limit: int) -> str:
    """`value` cut to `limit` characters, the cut marked with `…`."""
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _escape(value: str) -> str:
    return _REFERENCE.sub("#" + ZWSP, one_line(value).translate(_ESCAPES))


def _block_safe(markdown: str) -> str:
    """What would open a heading or a list at a line's start (`#`, `-`, `+`, `1.`) escaped."""
    start = _BLOCK_START.match(markdown)
    if start is None:
        return markdown
    return markdown[: start.end() - 1] + "\\" + markdown[start.end() - 1 :]


def text(value: str) -> str:
    """Plain text for a paragraph, list item, heading, quote or table cell."""
    return _block_safe(_escape(value))


def _unmarked(value: str) -> str:
    """One line with `<!--` broken by an invisible space: where HTML is not parsed (code), it
    would still let a search for stackward's marker match."""
    return one_line(value).replace("<!--", "<!" + ZWSP + "--")


def code(value: str) -> str:
    """A code span showing `value`; its fence is longer than any backtick run inside. Not for
    table cells (a `|` there would end the cell)."""
    value = _unmarked(value)
    fence = "`" * (max(map(len, _BACKTICKS.findall(value)), default=0) + 1)
    pad = " " if value[:1] in ("`", " ") or value[-1:] in ("`", " ") else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def inline(value: str) -> str:
    """Text whose `code spans` stay code spans (as in a policy message); all else as `text()`."""
    value = one_line(value)
    runs = list(_BACKTICKS.finditer(value))
    closers: list[int | None] = [None] * len(runs)  # the next run of the same length closes a span
    latest: dict[int, int] = {}
    for k in reversed(range(len(runs))):
        closers[k] = latest.get(len(runs[k][0]))
        latest[len(runs[k][0])] = k
    out, start, i = [], 0, 0
    while i < len(runs):
        opener, closer = runs[i], closers[i]
        if closer is None:
            i += 1
            continue
        content = value[opener.end() : runs[closer].start()]
        if len(content) > 1 and content[0] == content[-1] == " " and content.strip():
            content = content[1:-1]  # as CommonMark strips it
        out += [_escape(value[start : opener.start()]), code(content)]
        start, i = runs[closer].end(), closer + 1
    out.append(_escape(value[start:]))
    return _block_safe("".join(out))


def html(value: str) -> str:
    """Text inside an HTML element (e.g. `<summary>`), where Markdown escapes do not apply."""
    return _REFERENCE.sub("#" + ZWSP, one_line(value).translate(_HTML))


def url_path(path: str) -> str:
    """A file path percent-encoded for a link's URL."""
    return quote(path, safe="/")


def verbatim(line: str) -> str:
    """A line of user text for a fenced code block (see `fence`)."""
    return _unmarked(line)


def fence(lines: Sequence[str]) -> str:
    """A code fence no line of `lines` can close: longer than any backtick run in them."""
    return "`" * max([3, *(len(run) + 1 for line in lines for run in _BACKTICKS.findall(line))])


@dataclass(frozen=True)
class Shortenable:
    """A list in a report that may be shortened: `render(kept, left_out)` writes it with the items
    kept and a count of those left out (`left_out` here, plus any `fit` leaves out). It must cost at
    most `render([], all)` plus each kept item and its `sep`."""

    items: Sequence[str]
    render: Callable[[Sequence[str], int], str]
    sep: str = "\n"
    left_out: int = 0


Block = str | Shortenable


def listed(
    items: Sequence[str], more: Template, where: str = "", head: str = "", left_out: int = 0, sep: str = "\n"
) -> Shortenable:
    """A list under an optional head, closed by `more` (given `count` and `where`) when items are
    left out; after a blank line when the list is a table or its items are blocks, which a
    following line would otherwise join."""
    more_sep = "\n\n" if head.startswith("|") or sep == "\n\n" else sep

    def render(kept: Sequence[str], count: int) -> str:
        shown = sep.join([head, *kept] if head else kept)
        closing = more.substitute(count=count, where=where) if count else ""
        return more_sep.join(part for part in (shown, closing) if part)

    return Shortenable(items, render, sep, left_out)


_SEP = "\n\n"


def join(blocks: Sequence[Block]) -> str:
    """The blocks in full, separated by blank lines; empty ones dropped."""
    rendered = (b if isinstance(b, str) else b.render(b.items, b.left_out) for b in blocks)
    return _SEP.join(r for r in rendered if r)


def fit(blocks: Sequence[Block], budget: int, size: Callable[[str], int] = len) -> tuple[str, bool]:
    """The blocks joined as by `join`, each list cut to its share of `budget` (measured by `size`),
    and whether it left any item out. Short lists stay whole; the long ones share what is left
    equally. Strings stay whole: the result exceeds `budget` only when they and the lists' heads
    alone do."""
    parts = [b for b in blocks if isinstance(b, Shortenable)]
    fixed = size(_SEP) * max(len(blocks) - 1, 0)
    fixed += sum(size(b) for b in blocks if isinstance(b, str))
    fixed += sum(size(p.render([], len(p.items) + p.left_out)) for p in parts)
    costs = [[size(item) + size(p.sep) for item in p.items] for p in parts]
    needs = [sum(c) for c in costs]
    shares = [0] * len(parts)
    remaining = max(budget - fixed, 0)
    for n, k in enumerate(sorted(range(len(parts)), key=needs.__getitem__)):
        shares[k] = min(needs[k], remaining // (len(parts) - n))
        remaining -= shares[k]
    parts_left = iter(zip(costs, shares, strict=True))
    out: list[str] = []
    cut = False
    for block in blocks:
        if isinstance(block, str):
            out.append(block)
            continue
        item_costs, share = next(parts_left)
        kept = sum(1 for total in accumulate(item_costs) if total <= share)
        cut = cut or kept < len(block.items)
        out.append(block.render(block.items[:kept], block.left_out + len(block.items) - kept))
    return join(out), cut
