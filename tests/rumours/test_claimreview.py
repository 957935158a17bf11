"""schema.org ClaimReview for the public rumour board, and its safe embedding in a page."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import lxml.html
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fieldcomms.rumours import lifecycle as lc
from fieldcomms.rumours.claimreview import claim_review, jsonld_script

NOW = datetime(2011, 3, 12, 14, 0, tzinfo=UTC)
OFFICER = {"id": "u-secret-id", "callsign": "Bravo 2"}
PAGE = "https://police.example/events/libdempolicing/rumours"
ORG = "South Yorkshire Police"


def published(verdict: str = "false", claim: str = "Police snipers on the roofs") -> dict[str, Any]:
    source = {"text": "private tip from a named person", "seen_at": "2011-03-11T23:50:00Z"}
    r = lc.new_rumour("rum-1", "libdempolicing", claim, None, source, OFFICER, NOW)
    update = {"id": "upd-7", "event": "libdempolicing", "visibility": "public", "status": "active"}
    return lc.add_rebuttal(r, verdict, update, OFFICER, NOW + timedelta(minutes=4), "/api/v1/updates/upd-7")


REBUTTAL_UPDATE = {
    "id": "upd-7",
    "text": "These are ordinary officers and spotters, not snipers. Photo taken just now.",
    "photos": [{"id": "p1", "url": "/media/p1", "thumb_url": "/media/p1/thumb"}],
}


def test_claim_review_fields_one_by_one() -> None:
    review = claim_review(published(), REBUTTAL_UPDATE, organisation=ORG, page_url=PAGE)
    assert review["@context"] == "https://schema.org"
    assert review["@type"] == "ClaimReview"
    assert review["@id"] == PAGE + "#rumour-rum-1"
    assert review["claimReviewed"] == "Police snipers on the roofs"
    assert review["reviewRating"] == {"@type": "Rating", "ratingValue": 1, "bestRating": 5, "worstRating": 1,
                                      "alternateName": "False"}
    assert review["author"] == {"@type": "Organization", "name": ORG}
    assert review["datePublished"] == "2011-03-12"
    assert review["url"] == "https://police.example/api/v1/updates/upd-7"
    assert review["itemReviewed"] == {"@type": "Claim", "datePublished": "2011-03-11"}
    assert review["reviewBody"] == REBUTTAL_UPDATE["text"]
    assert review["image"] == "https://police.example/media/p1"


@pytest.mark.parametrize(
    ("verdict", "name", "value"),
    [("false", "False", 1), ("misleading", "Misleading", 2), ("unproven", "Unproven", 3), ("true", "True", 5)],
)
def test_each_verdict_has_its_rating(verdict: str, name: str, value: int) -> None:
    rating = claim_review(published(verdict), None, organisation=ORG, page_url=PAGE)["reviewRating"]
    assert (rating["alternateName"], rating["ratingValue"]) == (name, value)
    assert rating["worstRating"] <= rating["ratingValue"] <= rating["bestRating"]


def test_latest_rebuttal_gives_date_and_url() -> None:
    r = published()
    later = {"id": "upd-8", "event": "libdempolicing", "visibility": "public", "status": "active"}
    r = lc.add_rebuttal(r, "misleading", later, OFFICER, NOW + timedelta(days=1), "https://elsewhere.example/8")
    review = claim_review(r, None, organisation=ORG, page_url=PAGE)
    assert (review["datePublished"], review["url"]) == ("2011-03-13", "https://elsewhere.example/8")
    assert review["reviewRating"]["alternateName"] == "Misleading"


def test_without_rebuttal_url_the_page_is_the_url() -> None:
    r = published()
    r["rebuttals"][-1]["url"] = None
    review = claim_review(r, None, organisation=ORG, page_url=PAGE)
    assert review["url"] == PAGE
    assert "reviewBody" not in review and "image" not in review


def test_nothing_private_goes_into_the_review() -> None:
    text = json.dumps(claim_review(published(), REBUTTAL_UPDATE, organisation=ORG, page_url=PAGE))
    for secret in ("private tip", "u-secret-id", "Bravo 2"):
        assert secret not in text


@pytest.mark.parametrize("status", ["unverified", "investigating"])
def test_only_published_verdicts_have_a_review(status: str) -> None:
    r = lc.new_rumour("rum-1", "ev", "Snipers", None, None, OFFICER, NOW)
    if status != "unverified":
        r = lc.set_status(r, status, OFFICER, NOW)
    with pytest.raises(ValueError):
        claim_review(r, None, organisation=ORG, page_url=PAGE)
    concluded = lc.set_status(r, "false", OFFICER, NOW)  # a verdict without a rebuttal is not published
    with pytest.raises(ValueError):
        claim_review(concluded, None, organisation=ORG, page_url=PAGE)


HOSTILE = 'Snipers</script><script>alert("x")</script><!-- & -->'


def test_script_breakout_is_escaped() -> None:
    review = claim_review(published(claim=HOSTILE), None, organisation=ORG, page_url=PAGE)
    text = jsonld_script(review)
    assert "<" not in text and ">" not in text and "&" not in text
    assert "\\u003c/script\\u003e" in text
    assert json.loads(text) == review


def embedded(obj: Any) -> Any:
    """Put the JSON-LD in a page, parse the page as a browser would, and read the JSON back out."""
    page = f'<html><head><script type="application/ld+json">{jsonld_script(obj)}</script></head><body></body></html>'
    scripts = lxml.html.fromstring(page).xpath('//script[@type="application/ld+json"]')
    assert len(scripts) == 1
    return json.loads(scripts[0].text)


def test_the_review_survives_a_round_trip_through_a_page() -> None:
    review = claim_review(published(claim=HOSTILE), REBUTTAL_UPDATE, organisation=ORG, page_url=PAGE)
    assert embedded(review) == review


@given(st.text())
def test_any_claim_stays_inside_its_script_element(claim: str) -> None:
    text = jsonld_script({"claimReviewed": claim})
    assert "</" not in text and "<!--" not in text
    assert json.loads(text) == {"claimReviewed": claim}
