import itertools

import pytest

from retrieval.chunking import chunk_spans, markdown_spans

TEXT = " ".join(f"Sentence number {i} says something about topic {i % 7}." for i in range(60))


def test_chunks_cover_the_text_in_order_within_the_size_and_overlap_their_neighbours():
    spans = chunk_spans(TEXT, 200, 40)
    assert len(spans) > 5
    assert spans[0].start == 0 and spans[-1].end == len(TEXT)
    for span in spans:
        assert 0 < span.end - span.start <= 200
        chunk = TEXT[span.start : span.end]
        assert chunk == chunk.strip()
    for before, after in itertools.pairwise(spans):
        assert before.start < after.start < before.end  # overlap, and progress
        assert TEXT[after.start - 1] == " "  # starts on a word, never in the middle of one
    covered = set()
    for span in spans:
        covered.update(range(span.start, span.end))
    assert all(i in covered for i, c in enumerate(TEXT) if not c.isspace())


def test_chunks_end_at_sentence_ends_when_one_is_in_reach():
    for span in chunk_spans(TEXT, 200, 40)[:-1]:
        assert TEXT[span.end - 1] == "."


def test_no_overlap_gives_disjoint_chunks():
    spans = chunk_spans(TEXT, 150, 0)
    for before, after in itertools.pairwise(spans):
        assert after.start >= before.end


def test_short_text_is_one_chunk_without_surrounding_whitespace():
    assert [(s.start, s.end) for s in chunk_spans("  \n hello world \n", 100, 10)] == [(4, 15)]
    assert chunk_spans(" \n\t ", 100, 10) == []


def test_a_word_longer_than_the_chunk_is_cut_hard():
    spans = chunk_spans("x" * 250, 100, 10)
    assert [(s.start, s.end) for s in spans] == [(0, 100), (90, 190), (180, 250)]


def test_chunk_arguments_are_checked():
    with pytest.raises(ValueError):
        chunk_spans("text", 100, 100)


def test_markdown_chunks_stop_at_headings_and_carry_the_heading_path():
    text = (
        "Intro line.\n"
        "# Billing\nInvoices go out monthly.\n\n"
        "## Refunds\nRefunds take 14 days.\n"
        "# Shipping\n```\n# not a heading\n```\nWe ship worldwide.\n"
    )
    spans = markdown_spans(text, 500, 50)
    pieces = [(text[s.start : s.end], s.section) for s in spans]
    assert pieces == [
        ("Intro line.", None),
        ("# Billing\nInvoices go out monthly.", "Billing"),
        ("## Refunds\nRefunds take 14 days.", "Billing > Refunds"),
        ("# Shipping\n```\n# not a heading\n```\nWe ship worldwide.", "Shipping"),
    ]
