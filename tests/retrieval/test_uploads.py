import json

import pytest

from retrieval.errors import (
    BadJSONLine,
    DocumentRejected,
    DocumentTooLarge,
    EmptyDocument,
    TooManyDocuments,
    UnsupportedFileType,
)
from retrieval.settings import RetrievalSettings
from retrieval.uploads import Upload, parse_upload, parse_uploads

SETTINGS = RetrievalSettings(chunk_size=100, chunk_overlap=20, max_document_bytes=2000, max_documents_per_upload=3)


@pytest.mark.parametrize(
    ("upload", "kind"),
    [
        (Upload("notes.txt", "hello"), "text"),
        (Upload("README.MD", "# hello"), "markdown"),
        (Upload("rows.jsonl", '{"text": "hello"}'), "jsonl"),
        (Upload("rows.ndjson", '{"text": "hello"}'), "jsonl"),
        (Upload("no-extension", "hello", content_type="text/plain; charset=utf-8"), "text"),
        (Upload("server.log", "hello", content_type="text/markdown"), "markdown"),
        (Upload("anything.bin", "hello", kind="text"), "text"),
    ],
)
def test_kind_comes_from_the_explicit_kind_then_the_extension_then_the_content_type(upload, kind):
    assert parse_upload(upload, SETTINGS).kind == kind


@pytest.mark.parametrize(
    ("upload", "error"),
    [
        (Upload("report.pdf", b"%PDF-1.7", content_type="application/pdf"), UnsupportedFileType),
        (Upload("x.txt", "hello", kind="html"), UnsupportedFileType),  # type: ignore[arg-type]
        (Upload("latin1.txt", "caf\xe9".encode("latin-1")), UnsupportedFileType),
        (Upload("binary.txt", b"abc\x00def"), UnsupportedFileType),
        (Upload("empty.txt", ""), EmptyDocument),
        (Upload("blank.md", " \n\n\t"), EmptyDocument),
        (Upload("blank.jsonl", "\n\n"), EmptyDocument),
        (Upload("big.txt", "x" * 2001), DocumentTooLarge),
        (Upload("", "hello"), DocumentRejected),
        (Upload("meta.txt", "hello", metadata={"when": object()}), DocumentRejected),
    ],
)
def test_bad_documents_are_refused_with_their_own_error(upload, error):
    with pytest.raises(error) as caught:
        parse_upload(upload, SETTINGS)
    assert caught.value.message and caught.value.code


@pytest.mark.parametrize(
    ("content", "line"),
    [
        ('{"text": "fine"}\n{"text": "also fine"\n', 2),
        ('{"text": "fine"}\n\n["not", "an", "object"]\n', 3),
        ('{"body": "no text field"}\n', 1),
        ('{"text": ""}\n', 1),
        ('{"text": 42}\n', 1),
        ('{"text": "x", "metadata": [1]}\n', 1),
    ],
)
def test_a_bad_jsonl_line_is_named_by_its_number(content, line):
    with pytest.raises(BadJSONLine) as caught:
        parse_upload(Upload("rows.jsonl", content), SETTINGS)
    assert caught.value.line == line
    assert f"line {line}" in caught.value.message


def test_too_many_documents_in_one_upload_are_refused_before_any_is_read():
    with pytest.raises(TooManyDocuments):
        parse_uploads([Upload(f"{i}.txt", "hello") for i in range(4)], SETTINGS)
    with pytest.raises(EmptyDocument):
        parse_uploads([], SETTINGS)


def test_jsonl_lines_are_chunked_alone_and_carry_their_fields_as_metadata():
    lines = [
        {"text": "First record. " * 12, "source": "wiki", "metadata": {"lang": "en"}},
        {"text": "Second record.", "source": "faq"},
    ]
    content = "\n".join(json.dumps(line) for line in lines)
    document = parse_upload(Upload("rows.jsonl", content, metadata={"team": "support", "source": "upload"}), SETTINGS)
    first = [p for p in document.pieces if p.line == 1]
    second = [p for p in document.pieces if p.line == 2]
    assert len(first) >= 2 and len(second) == 1
    assert [p.index for p in document.pieces] == list(range(len(document.pieces)))
    assert first[0].metadata == {"team": "support", "source": "wiki", "lang": "en"}
    assert second[0].metadata == {"team": "support", "source": "faq"}
    for piece in first:
        assert lines[0]["text"][piece.start : piece.end] == piece.text


def test_positions_index_the_normalised_text_and_markdown_sections_reach_the_embedding_text():
    text = "# Refunds\r\nRefunds are paid within 14 days.\r\n# Shipping\r\nWe ship everywhere.\r\n"
    document = parse_upload(Upload("faq.md", text.encode("utf-8-sig")), SETTINGS)
    normalised = text.replace("\r\n", "\n")
    assert [p.text for p in document.pieces] == [
        "# Refunds\nRefunds are paid within 14 days.",
        "# Shipping\nWe ship everywhere.",
    ]
    for piece in document.pieces:
        assert normalised[piece.start : piece.end] == piece.text
    assert document.pieces[1].metadata == {"section": "Shipping"}
    assert document.pieces[1].embedding_text().startswith("Shipping\n")
    assert document.size_bytes == len(text.encode("utf-8-sig"))
