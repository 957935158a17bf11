"""Which rumour to answer first. `URGENCY_DESCRIPTION` is the formula as published in the OpenAPI document.

Urgency is computed at read time from the sighting times, never trusted from storage: it decays by the minute.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from fieldcomms.rumours.lifecycle import UNVERIFIED, has_published_verdict, parse_time

HALF_LIFE_MINUTES = 30.0
UNVERIFIED_FACTOR = 1.2
PUBLISHED_FACTOR = 0.1
RECENT_WINDOW = timedelta(hours=1)

URGENCY_DESCRIPTION = f"""\
`urgency` ranks rumours by how badly they need an answer now:

```
urgency = status_factor × Σ 0.5 ^ (age_i / {HALF_LIFE_MINUTES:g})
```

- The sum runs over every sighting of the rumour, including the one it was logged with.
- `age_i` is the number of minutes since sighting *i* was seen (its `seen_at`, or when it was recorded).
  A sighting stamped in the future counts as seen now.
- Each sighting adds 1 when fresh and half as much every {HALF_LIFE_MINUTES:g} minutes
  ({HALF_LIFE_MINUTES:g} minutes: 0.5; {HALF_LIFE_MINUTES * 4:g} minutes: 0.0625),
  so a rumour spreading now outranks one that was everywhere this morning.
- `status_factor` is {UNVERIFIED_FACTOR:g} while the rumour is `unverified` (nobody has looked at it yet),
  1 while it is `investigating` or has a verdict not yet published,
  and {PUBLISHED_FACTOR:g} once a verdict is published (a verdict status and at least one rebuttal).
- The value is rounded to 3 decimals and computed when the response is made.

Rumour lists without `since` are sorted by `urgency`, highest first, then by `last_seen_at`, newest first.
`sightings_last_hour` counts the sightings seen in the hour before the response.
"""


def _times(rumour: Mapping[str, Any]) -> list[datetime]:
    stamps = rumour.get("_sighting_times")
    if stamps is None:
        # A rumour stored before sighting times were kept: all we know is when it was last seen.
        stamps = [rumour["last_seen_at"]] * int(rumour.get("sightings") or 1)
    return [parse_time(s) for s in stamps]


def _age_minutes(seen: datetime, now: datetime) -> float:
    return max(0.0, (now - seen).total_seconds() / 60.0)


def status_factor(rumour: Mapping[str, Any]) -> float:
    if has_published_verdict(rumour):
        return PUBLISHED_FACTOR
    if rumour.get("status") == UNVERIFIED:
        return UNVERIFIED_FACTOR
    return 1.0


def sightings_last_hour(rumour: Mapping[str, Any], now: datetime) -> int:
    return sum(1 for seen in _times(rumour) if _age_minutes(seen, now) < RECENT_WINDOW.total_seconds() / 60.0)


def urgency(rumour: Mapping[str, Any], now: datetime, half_life_minutes: float = HALF_LIFE_MINUTES) -> float:
    if half_life_minutes <= 0:
        raise ValueError("half_life_minutes must be positive")
    heat = sum(0.5 ** (_age_minutes(seen, now) / half_life_minutes) for seen in _times(rumour))
    return round(status_factor(rumour) * heat, 3)


def refresh(
    rumour: Mapping[str, Any], now: datetime, half_life_minutes: float = HALF_LIFE_MINUTES
) -> dict[str, Any]:
    """A copy with `sightings_last_hour` and `urgency` as of `now`."""
    fresh = copy.deepcopy(dict(rumour))
    fresh["sightings_last_hour"] = sightings_last_hour(rumour, now)
    fresh["urgency"] = urgency(rumour, now, half_life_minutes)
    return fresh


def sort_by_urgency(
    rumours: Iterable[Mapping[str, Any]], now: datetime, half_life_minutes: float = HALF_LIFE_MINUTES
) -> list[dict[str, Any]]:
    """Refreshed copies, most urgent first; ties go to the most recently seen, then by id for a stable order."""
    fresh = [refresh(r, now, half_life_minutes) for r in rumours]
    # Sorting is stable: order by the weakest key first.
    fresh.sort(key=lambda r: str(r["id"]))
    fresh.sort(key=lambda r: parse_time(r["last_seen_at"]), reverse=True)
    fresh.sort(key=lambda r: r["urgency"], reverse=True)
    return fresh
