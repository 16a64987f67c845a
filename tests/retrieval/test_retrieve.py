import asyncio

import pytest
from conftest import corpus_uploads, questions

from retrieval.errors import InvalidQuery
from retrieval.hits import ground
from retrieval.uploads import Upload


@pytest.fixture
def service(make_service):
    service = make_service()
    service.add_documents("acme", corpus_uploads())
    return service


def test_the_chunk_that_answers_each_question_ranks_first(service):
    async def main():
        return [(await service.retrieve("acme", question, top_k=3), name) for question, name in questions()]

    for hits, name in asyncio.run(main()):
        assert len(hits) == 3
        assert hits[0].document_name == name, [(h.document_name, round(h.score, 3)) for h in hits]
        assert hits[0].score > hits[1].score
        assert all(-1 <= hit.score <= 1 for hit in hits)


def test_hits_carry_their_document_position_and_metadata(service):
    hits = asyncio.run(service.retrieve("acme", "When is old food thrown out of the refrigerator?", top_k=1))
    hit = hits[0]
    assert hit.document_name == "kitchen.jsonl"
    assert hit.text == "Fridges are emptied and cleaned every Friday at 4 pm."
    assert hit.position.line == 2 and hit.position.index == 1
    assert (hit.position.start, hit.position.end) == (0, len(hit.text))
    assert hit.metadata == {"topic": "kitchen", "owner": "ops"}
    assert service.get_document("acme", hit.document_id).name == "kitchen.jsonl"


def test_two_tenants_with_conflicting_documents_each_get_only_their_own(make_service):
    service = make_service()
    service.add_documents("north", [Upload("policy.txt", "The refund window is 14 days from delivery.")])
    service.add_documents("south", [Upload("policy.txt", "The refund window is 60 days from delivery.")])
    service.add_documents("south", [Upload("extra.txt", "Refunds for damaged goods are immediate.")])
    question = "How long is the refund window?"

    async def main():
        return [await service.retrieve(tenant, question, top_k=5) for tenant in ("north", "south", "west")]

    north, south, west = asyncio.run(main())
    north_ids = {d.id for d in service.list_documents("north")}
    south_ids = {d.id for d in service.list_documents("south")}
    assert [h.text for h in north] == ["The refund window is 14 days from delivery."]
    assert {h.document_id for h in north} <= north_ids
    assert "60 days" in south[0].text and len(south) == 2
    assert {h.document_id for h in south} <= south_ids
    assert west == []  # a tenant without documents gets nothing, never someone else's


def test_a_chunk_id_of_another_tenant_is_never_read_back(service):
    other = service.add_documents("intruder", [Upload("x.txt", "Staff parking is on level B2.")])[0]
    intruder_chunk = service.document_chunks("intruder", other.id)[0].id
    # Even if an index handed out a foreign id, the read-back is scoped by tenant.
    assert service.store.hits("acme", [intruder_chunk]) == {}


@pytest.mark.parametrize("top_k", [0, -1, 21, 2.5, "3", True])
def test_top_k_out_of_range_is_refused(service, top_k):
    with pytest.raises(InvalidQuery) as caught:
        asyncio.run(service.retrieve("acme", "parking", top_k=top_k))
    assert caught.value.param == "top_k"


def test_min_score_drops_weak_hits_and_is_checked(service):
    question = "Where can employees leave their cars?"
    everything = asyncio.run(service.retrieve("acme", question, top_k=9))
    assert len(everything) == 9
    cut = (everything[0].score + everything[1].score) / 2
    strong = asyncio.run(service.retrieve("acme", question, top_k=9, min_score=cut))
    assert [hit.chunk_id for hit in strong] == [everything[0].chunk_id]
    with pytest.raises(InvalidQuery):
        asyncio.run(service.retrieve("acme", "parking", min_score=1.5))


def test_a_blank_query_has_no_hits(service):
    assert asyncio.run(service.retrieve("acme", "   ")) == []


def test_hits_become_a_system_message_with_markers_and_a_sources_list(service):
    hits = asyncio.run(service.retrieve("acme", "How often do we get new computers?", top_k=3))
    grounding = ground(hits, max_chars=4000)
    content = grounding.message["content"]
    assert grounding.message["role"] == "system"
    assert "[1] (laptops.md — Hardware)\n# Hardware\nLaptops are replaced every four years." in content
    assert "[2] (" in content and "[3] (" in content
    first = {"id": hits[0].chunk_id, "document_id": hits[0].document_id, "score": round(hits[0].score, 4)}
    assert grounding.sources[0] == first
    assert grounding.header == ",".join(str(h.chunk_id) for h in hits)
    assert grounding.record[0]["text"] == hits[0].text


def test_grounding_keeps_within_its_budget_and_names_only_what_it_kept(service):
    hits = asyncio.run(service.retrieve("acme", "How often do we get new computers?", top_k=5))
    grounding = ground(hits, max_chars=400)
    assert len(grounding.message["content"]) <= 400
    assert 1 <= len(grounding.hits) < 5 and len(grounding.sources) == len(grounding.hits)
    tiny = ground(hits, max_chars=250)
    assert len(tiny.hits) == 1 and tiny.message["content"].endswith("…")
    assert ground([]) is None


def test_embed_texts_checks_its_input_and_counts_tokens(service):
    result = asyncio.run(service.embed_texts(["hello world", "a second input"]))
    assert result.vectors.shape == (2, 384) and result.model == "all-MiniLM-L6-v2"
    assert result.total_tokens == sum(result.token_counts) and result.token_counts[0] == 4
    for bad in ([], "a string", ["fine", ""], ["fine", 3]):
        with pytest.raises(InvalidQuery):
            asyncio.run(service.embed_texts(bad))
