"""What the hook accepts, the report index stores: edge-case metadata documents against the real
Elasticsearch, in an index with the product's report mapping.

Each document is either refused by ``make_event`` with a one-line message, or built into a report
that the product's writer stores. A refusal that stands for something Elasticsearch itself refuses
is checked against it too: the same document, unvalidated, is refused by the index.
"""

from __future__ import annotations

import uuid as uuids
from datetime import datetime, timezone

import pytest
from elasticsearch import ApiError

from consumer.elastic import connect
from consumer.report import build_report
from consumer.retry import RetryPolicy
from consumer.settings import Settings
from consumer.sink import WriteOutcome, ensure_report_index, write_report
from producer_hooks.events import Event, InvalidEvent, make_event
from tests.support.metadata import snake_doc

NOW = datetime.now(timezone.utc)


def nest(depth: int, leaf: object = "v") -> object:
    """``leaf`` inside ``depth`` objects."""
    for _ in range(depth):
        leaf = {"k": leaf}
    return leaf


def doc(uuid: str | None = None, **changes: object) -> dict:
    return snake_doc(uuid or f"limits-{uuids.uuid4().hex[:12]}", **changes)


# (document, None if it must be stored, else (the start of make_event's message, whether
# Elasticsearch refuses it too, or it is refused by policy or the 32 kB limit alone)).
CASES = [
    # keys Elasticsearch takes in a flattened field
    pytest.param(doc(tags={"": 1}), None, id="empty-key"),
    pytest.param(doc(tags={".": 1, "..": 2, ".a": 3, "a.": 4, "a..b": 5}), None, id="dot-keys"),
    pytest.param(doc(tags={"x": 1, "x.y": 2}, more={"x": {"y": 1}, "x.y": 2}), None, id="x-beside-x.y"),
    pytest.param(doc(tags={"_id": 1, "_source": 2, "_routing": 3}), None, id="underscore-keys"),
    pytest.param(doc(tags={" ": 1, "a\nb": 2, "\u00e9\U0001f600": "\u00e9\U0001f600"}), None, id="odd-keys"),
    pytest.param(doc(kind="ocp", metadata={"platform": "GCP"}, run={"id": 1}), None, id="envelope-like-keys"),
    pytest.param(doc(note="a\x00b\x07c"), None, id="control-chars-in-value"),
    # sizes at the limits
    pytest.param(doc(note="x" * 32_761), None, id="key-and-value-32766-bytes"),
    pytest.param(doc(tags={"n": "\u00e9" * 16_379}), None, id="multibyte-at-term-limit"),
    pytest.param(doc(**{"k" * 32_764: ""}), None, id="key-at-term-limit"),
    pytest.param(doc(tags={"a" * 16_379: {"b" * 16_379: "v"}}), None, id="path-at-term-limit"),
    pytest.param(doc(deep=nest(19)), None, id="20-objects-deep"),
    pytest.param(doc(deep=nest(9, [nest(10)])), None, id="20-deep-through-an-array"),
    pytest.param(doc(deep=[[[[[[[[[[[[[[[[[[[[[["v"]]]]]]]]]]]]]]]]]]]]]]), None, id="arrays-add-no-depth"),
    pytest.param(doc(big=2**63 - 1, tiny=-1e-300, huge=1e308, flag=True, nothing=None, empty={}, none=[]), None,
                 id="scalars"),
    pytest.param(doc(cluster_name="c" * 1_100, build_tag="b" * 1_100), None, id="long-canonical-fields"),
    # run ids
    pytest.param(doc("a" * 512), None, id="uuid-512-bytes"),
    pytest.param(doc("abc123-0"), None, id="uuid-test-id"),
    pytest.param(doc(f"{uuids.uuid4().hex[:6]}-scheduled__2024-05-02T00:00:00+00:00"), None, id="uuid-airflow-run-id"),
    pytest.param(doc("a" * 513), ("uuid: ", True), id="uuid-513-bytes"),
    pytest.param(doc("."), ("uuid: '.' is not a usable run id", True), id="uuid-dot"),
    pytest.param(doc(".."), ("uuid: '..' is not a usable run id", True), id="uuid-dot-dot"),
    pytest.param(doc("_x"), ("uuid: '_x' is not a usable run id", False), id="uuid-underscore"),
    pytest.param(doc("a b"), ("uuid: 'a b' is not a usable run id", False), id="uuid-space"),
    pytest.param(doc("a/b"), ("uuid: 'a/b' is not a usable run id", False), id="uuid-slash"),
    # what Elasticsearch refuses
    pytest.param(doc(tags={"a\x00b": 1}), ("tags: key 'a\\x00b' contains a NUL character", True), id="nul-in-key"),
    pytest.param(doc(deep=nest(20)), ("deep.k", True), id="21-objects-deep"),
    pytest.param(doc(deep=nest(19, {})), ("deep.k", True), id="empty-object-21-deep"),
    pytest.param(doc(deep=nest(9, [nest(11)])), ("deep.k", True), id="21-deep-through-an-array"),
    pytest.param(doc(**{"k" * 32_760: 123456}), ("kkkkk", True), id="key-and-number-32767-bytes"),
    pytest.param(doc(**{"k" * 33_000: "v"}), ("document: a key of 33,000 bytes", True), id="key-33000-bytes"),
    pytest.param(doc(tags={"a" * 16_379: {"b" * 16_380: "v"}}), ("tags.aaa", True), id="path-over-term-limit"),
    pytest.param(doc(build_tag="b" * 32_767), ("build_tag: a string of 32,767 bytes", True), id="benchmark-32767"),
    pytest.param(doc(cluster_name="c" * 40_000), ("cluster_name: a string of 40,000 bytes", True), id="cluster-40kB"),
    # the 32 kB limit, beyond what the flattened field would refuse (it skips values over 1,024 chars)
    pytest.param(doc(note="x" * 40_000), ("note: a string of 40,000 bytes", False), id="free-form-40kB"),
    pytest.param(doc(note="x" * 32_762), ("note: its key path and value take 32,767 bytes", False), id="term-32767"),
    pytest.param(doc(**{"k" * 33_000: None}), ("document: a key of 33,000 bytes", False), id="long-key-null-value"),
]  # fmt: skip


@pytest.fixture(scope="module")
async def report_index(service_settings: Settings):
    """A throwaway index with the product's report mapping and settings."""
    index = f"test-limits-{uuids.uuid4().hex[:10]}"
    async with connect(service_settings.es) as es:
        await ensure_report_index(es, index)
        try:
            yield es, index
        finally:
            await es.options(ignore_status=404).indices.delete(index=index)


def report_of(event: Event) -> dict:
    return build_report(event, results={}, metrics=[], links={}, profiles=[("control-plane", 1)], reasons=[],
                        built_at=NOW)


def unvalidated_report(metadata: dict) -> dict:
    """The report the consumer would write for ``metadata`` if the event model let it through."""
    stand_in = make_event(snake_doc(f"stand-in-{uuids.uuid4().hex[:8]}"))
    report = report_of(stand_in)
    report.update(uuid=str(metadata["uuid"]), benchmark=metadata.get("build_tag"),
                  openshift_cluster_name=metadata.get("cluster_name"), metadata=metadata)
    return report


@pytest.mark.parametrize(("metadata", "refusal"), CASES)
async def test_every_document_is_either_refused_clearly_or_stored_in_the_report_index(
    report_index, metadata: dict, refusal: tuple[str, bool] | None
) -> None:
    es, index = report_index
    if refusal is None:
        event = make_event(metadata, now=NOW)
        outcome = await write_report(es, index, report_of(event), RetryPolicy(attempts=2, max_wait_s=1))
        assert outcome is WriteOutcome.CREATED
        stored = await es.get(index=index, id=event.run.uuid)
        assert stored["_source"]["metadata"] == metadata
        return

    says, index_refuses = refusal
    with pytest.raises(InvalidEvent) as caught:
        make_event(metadata, now=NOW)
    message = str(caught.value)
    assert message.startswith(says) and "\n" not in message and len(message) < 300, message[:300]
    if index_refuses:
        with pytest.raises(ApiError):
            await es.index(index=index, id=str(metadata["uuid"]), document=unvalidated_report(metadata))
