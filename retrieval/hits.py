"""What a query returns (`Hit`) and how hits ground a conversation: a system message with numbered sources.

No model and no FAISS here: the gateway can import it with retrieval off.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

INSTRUCTIONS = (
    "Answer using the numbered excerpts below from the user's documents when they are relevant, and cite the ones "
    "you use by their number, like [1]. If they do not contain the answer, say so rather than guess."
)


@dataclass(frozen=True)
class Position:
    """Where a chunk sits: its index in the document and `[start, end)` character offsets into the document's
    text (for JSONL: into the `text` of line `line`)."""

    index: int
    start: int
    end: int
    line: int | None = None


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    document_id: str
    document_name: str
    position: Position
    text: str
    score: float  # cosine similarity, -1..1
    metadata: dict[str, Any]

    def source(self) -> dict[str, Any]:
        """The compact form a response names its sources in."""
        return {"id": self.chunk_id, "document_id": self.document_id, "score": round(self.score, 4)}

    def as_dict(self) -> dict[str, Any]:
        """Everything about the hit, JSON-ready: what the interaction record keeps as retrieved context."""
        return {
            "id": self.chunk_id,
            "document_id": self.document_id,
            "document_name": self.document_name,
            "position": {
                "index": self.position.index,
                "start": self.position.start,
                "end": self.position.end,
                "line": self.position.line,
            },
            "score": round(self.score, 4),
            "text": self.text,
            "metadata": self.metadata,
        }


@dataclass(frozen=True)
class Grounding:
    message: dict[str, str]  # {"role": "system", "content": ...}: put it in front of the conversation
    hits: list[Hit]  # the hits the message holds; hits[i] is marker [i + 1]

    @property
    def sources(self) -> list[dict[str, Any]]:
        """`[{"id", "document_id", "score"}]` in marker order: the response's extension field."""
        return [hit.source() for hit in self.hits]

    @property
    def header(self) -> str:
        """The chunk ids in marker order, comma-separated: for a response header where a body field cannot go
        (streams)."""
        return ",".join(str(hit.chunk_id) for hit in self.hits)

    @property
    def record(self) -> list[dict[str, Any]]:
        """The full hits, for the interaction record."""
        return [hit.as_dict() for hit in self.hits]


def ground(hits: Sequence[Hit], *, max_chars: int = 8000, instructions: str = INSTRUCTIONS) -> Grounding | None:
    """The system message holding `hits` as `[1] …`, `[2] …`, best first, within `max_chars` characters.

    Hits that do not fit are left out (and out of the sources); the first one is cut to fit rather than dropped.
    None when there are no hits: the conversation then goes on ungrounded.
    """
    if not hits:
        return None
    parts = [instructions]
    used: list[Hit] = []
    size = len(instructions)
    for hit in hits:
        entry = _entry(len(used) + 1, hit)
        if size + 2 + len(entry) > max_chars:
            if used:
                break
            entry = entry[: max(0, max_chars - size - 3)] + "…"
        parts.append(entry)
        used.append(hit)
        size += 2 + len(entry)
    return Grounding({"role": "system", "content": "\n\n".join(parts)}, used)


def _entry(marker: int, hit: Hit) -> str:
    label = hit.document_name
    section = hit.metadata.get("section")
    if isinstance(section, str) and section:
        label += f" — {section}"
    return f"[{marker}] ({label})\n{hit.text.strip()}"
