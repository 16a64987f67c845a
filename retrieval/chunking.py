"""Splitting text into overlapping chunks of about `size` characters, cut at paragraph, sentence or word ends."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Span:
    """`text[start:end]` of the text it was cut from; `section` is the markdown heading path above it, if any."""

    start: int
    end: int
    section: str | None = None


def chunk_spans(text: str, size: int, overlap: int) -> list[Span]:
    """Cut `text` into spans of at most `size` characters; each begins about `overlap` characters before the
    previous one ends. Leading and trailing whitespace is left out of every span, so no span is blank."""
    if size < 1 or not 0 <= overlap < size:
        raise ValueError("need size >= 1 and 0 <= overlap < size")
    spans: list[Span] = []
    n = len(text)
    start = _skip_space(text, 0, n)
    while start < n:
        end = min(start + size, n)
        if end < n:
            end = _break_point(text, start + size // 2, end)
        stop = end
        while stop > start and text[stop - 1].isspace():
            stop -= 1
        if stop > start:
            spans.append(Span(start, stop))
        if end >= n:
            break
        # The next chunk starts `overlap` back, moved forward to a word start so no chunk opens mid-word.
        following = max(end - overlap, start + 1)
        following = _word_start(text, following, end)
        start = _skip_space(text, following, n)
    return spans


def _break_point(text: str, lo: int, hi: int) -> int:
    """The best place in (lo, hi] to end a chunk: after a blank line, a line, a sentence, a word; else hi."""
    cut = text.rfind("\n\n", lo, hi)
    if cut != -1:
        return cut + 2
    cut = text.rfind("\n", lo, hi)
    if cut != -1:
        return cut + 1
    for i in range(hi - 1, lo - 1, -1):
        if text[i] in ".!?" and (i + 1 >= len(text) or text[i + 1].isspace()):
            return i + 1
    cut = text.rfind(" ", lo, hi)
    if cut != -1:
        return cut + 1
    return hi


def _word_start(text: str, pos: int, limit: int) -> int:
    if pos <= 0 or text[pos - 1].isspace() or text[pos].isspace():
        return pos
    space = text.find(" ", pos, limit)
    newline = text.find("\n", pos, limit)
    candidates = [c for c in (space, newline) if c != -1]
    return min(candidates) + 1 if candidates else pos


def _skip_space(text: str, pos: int, n: int) -> int:
    while pos < n and text[pos].isspace():
        pos += 1
    return pos


_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def markdown_spans(text: str, size: int, overlap: int) -> list[Span]:
    """Chunks that never cross a heading, each tagged with the heading path it falls under ("Billing > Refunds").

    Each section (a heading and the text up to the next one) is chunked on its own, so a chunk is about one thing.
    """
    headings = _headings(text)
    bounds = [(0, None), *headings] if not headings or headings[0][0] > 0 else headings
    spans: list[Span] = []
    for i, (begin, section) in enumerate(bounds):
        end = bounds[i + 1][0] if i + 1 < len(bounds) else len(text)
        for span in chunk_spans(text[begin:end], size, overlap):
            spans.append(Span(begin + span.start, begin + span.end, section))
    return spans


def _headings(text: str) -> list[tuple[int, str | None]]:
    """(offset, heading path) of every ATX heading outside fenced code blocks, in order."""
    found: list[tuple[int, str | None]] = []
    path: list[tuple[int, str]] = []
    in_fence = False
    offset = 0
    for line in text.splitlines(keepends=True):
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and (match := _HEADING.match(line.rstrip("\n"))):
            level = len(match.group(1))
            path = [(lvl, title) for lvl, title in path if lvl < level] + [(level, match.group(2))]
            found.append((offset, " > ".join(title for _, title in path)))
        offset += len(line)
    return found
