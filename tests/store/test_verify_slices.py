"""`fieldcomms check` compares the snapshot with the journal by each document's canonical bytes; for a plain
record it slices them out of the journal line instead of encoding the document again. The slice must be exactly
the document's canonical form, whatever the document holds (keys and strings that look like the record's own)."""

from __future__ import annotations

import io
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from fieldcomms.store.chain import canonical
from fieldcomms.store.verify import _data_bytes, _lines, doc_fingerprint

TRICKY = st.sampled_from(['","seq":', ',"seq":1,"type":"x"}', '"data":', '{"coll":', "\n", "é", "\u2028", "id"])
KEYS = st.one_of(st.text(max_size=6), TRICKY, st.sampled_from(["seq", "data", "coll", "type", "aux", "id"]))
VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**63, max_value=2**63 - 1), st.floats(allow_nan=False, allow_infinity=False),
              st.text(max_size=10), TRICKY),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=20)


@settings(max_examples=400, deadline=None)
@given(doc=st.dictionaries(KEYS, VALUES, max_size=6), coll=st.one_of(st.text(max_size=8), TRICKY),
       seq=st.integers(min_value=1, max_value=2**53), type_=st.sampled_from(["update", "position", "x"]))
def test_the_slice_is_the_documents_canonical_form(doc: dict[str, Any], coll: str, seq: int, type_: str) -> None:
    doc = {**doc, "id": "x1", "seq": seq}
    record = {"seq": seq, "type": type_, "coll": coll, "data": doc}
    body = canonical(record)
    sliced = _data_bytes(orjson.loads(body), body)
    assert sliced == canonical(doc)
    assert doc_fingerprint(doc, sliced) == doc_fingerprint(doc)


def test_no_slice_where_the_record_is_not_plain() -> None:
    doc = {"id": "x1", "seq": 3}
    for record in ({"seq": 3, "type": "t", "coll": "c", "data": doc, "aux": [["idempotency", {"id": "k", "seq": 3}]]},
                   {"seq": 3, "type": "t", "coll": "c", "data": doc, "redacted": True, "digest": "00" * 32}):
        assert _data_bytes(record, canonical(record)) is None


@given(lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"") + b"\n"), max_size=30),
       tail=st.binary(max_size=10).map(lambda b: b.replace(b"\n", b"")))
def test_lines_read_in_blocks_are_the_lines(lines: list[bytes], tail: bytes) -> None:
    import fieldcomms.store.verify as verify

    data = b"".join(lines) + tail
    old = verify.BLOCK
    verify.BLOCK = 7  # blocks that cut lines anywhere
    try:
        assert list(_lines(io.BytesIO(data))) == list(io.BytesIO(data))
    finally:
        verify.BLOCK = old
