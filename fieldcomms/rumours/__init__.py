"""Rumours: the pure domain part. Plain functions over rumour dicts; no HTTP, no storage.

- `lifecycle`: creating a rumour, sightings, status changes, rebuttals and their retraction.
- `urgency`: the ranking score (`urgency.urgency`, not re-exported here: it would hide the module) and its
  published description.
- `matching`: which known rumours a report from the public repeats.
- `claimreview`: schema.org ClaimReview JSON-LD for the public board.
"""

from fieldcomms.rumours.claimreview import claim_review, jsonld_script
from fieldcomms.rumours.lifecycle import (
    INTERNAL_FIELDS,
    STATUSES,
    VERDICTS,
    add_rebuttal,
    add_sighting,
    has_published_verdict,
    new_rumour,
    set_status,
    unlink_update,
    without_internal_fields,
)
from fieldcomms.rumours.matching import Matcher, evaluate, score
from fieldcomms.rumours.urgency import (
    URGENCY_DESCRIPTION,
    refresh,
    sightings_last_hour,
    sort_by_urgency,
)

__all__ = [
    "INTERNAL_FIELDS",
    "STATUSES",
    "URGENCY_DESCRIPTION",
    "VERDICTS",
    "Matcher",
    "add_rebuttal",
    "add_sighting",
    "claim_review",
    "evaluate",
    "has_published_verdict",
    "jsonld_script",
    "new_rumour",
    "refresh",
    "score",
    "set_status",
    "sightings_last_hour",
    "sort_by_urgency",
    "unlink_update",
    "without_internal_fields",
]
