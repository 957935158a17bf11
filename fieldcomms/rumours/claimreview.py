"""schema.org `ClaimReview` for the public rumour board, so search engines and fact-check aggregators read our answers.

Ratings follow the 1 (false) to 5 (true) scale used by fact-checkers publishing ClaimReview:

| verdict | `alternateName` | `ratingValue` |
|---|---|---|
| `false` | False | 1 |
| `misleading` | Misleading | 2 |
| `unproven` | Unproven | 3 |
| `true` | True | 5 |

4 ("mostly true") is unused: we have no such verdict. Only public data goes in: a rumour's sources and the officers
who changed it are not public, so `itemReviewed` carries the claim's date and nothing of where it was seen.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin

from fieldcomms.rumours.lifecycle import has_published_verdict, parse_time

RATINGS: dict[str, tuple[str, int]] = {
    "false": ("False", 1),
    "misleading": ("Misleading", 2),
    "unproven": ("Unproven", 3),
    "true": ("True", 5),
}
BEST_RATING = 5
WORST_RATING = 1

# Characters that could end the <script> element or open a comment inside it, or end a JavaScript line.
_SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _date(rfc3339: str) -> str:
    return parse_time(rfc3339, "at").date().isoformat()


def claim_review(
    rumour: Mapping[str, Any],
    rebuttal_update: Mapping[str, Any] | None,
    *,
    organisation: str,
    page_url: str,
) -> dict[str, Any]:
    """The ClaimReview of a rumour with a published verdict, answered by its latest rebuttal.

    `rebuttal_update` is that rebuttal's update as the public sees it (or None): its text becomes `reviewBody`
    and its first photo `image`. `page_url` is the absolute URL of the rumour board; relative URLs resolve
    against it and it identifies the review (`@id`).
    """
    if not has_published_verdict(rumour):
        raise ValueError("only a rumour with a published verdict has a ClaimReview")
    latest = rumour["rebuttals"][-1]
    alternate_name, value = RATINGS[rumour["status"]]
    review: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": "ClaimReview",
        "@id": f"{page_url}#rumour-{rumour['id']}",
        "url": urljoin(page_url, latest.get("url") or page_url),
        "claimReviewed": rumour["claim"],
        "datePublished": _date(latest["at"]),
        "author": {"@type": "Organization", "name": organisation},
        "reviewRating": {
            "@type": "Rating",
            "ratingValue": value,
            "bestRating": BEST_RATING,
            "worstRating": WORST_RATING,
            "alternateName": alternate_name,
        },
        "itemReviewed": {"@type": "Claim", "datePublished": _date(rumour["first_seen_at"])},
    }
    if rebuttal_update is not None:
        if rebuttal_update.get("text"):
            review["reviewBody"] = rebuttal_update["text"]
        photos = rebuttal_update.get("photos") or []
        if photos and photos[0].get("url"):
            review["image"] = urljoin(page_url, photos[0]["url"])
    return review


def jsonld_script(obj: Any) -> str:
    """JSON for the inside of `<script type="application/ld+json">`: a claim containing `</script>` or `<!--`
    stays inside the element, and the text still parses as the same JSON."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    for char, escape in _SCRIPT_ESCAPES.items():
        text = text.replace(char, escape)
    return text
