"""Issue 4: how well public reports are matched to known rumours, and what a score costs.

Precision and recall over the labelled pairs in bench/data/match_pairs.json, at the threshold a default
configuration uses (`match_threshold = 0` means the tuned `DEFAULT_THRESHOLD`). The cost of one score is timed
cold (every cache of the matcher emptied first: a report never seen before, against a claim never seen before)
and warm (the words of both already analysed, as when officers reload the report list).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from fieldcomms.config import Settings
from fieldcomms.rumours import matching
from fieldcomms.rumours.matching import DEFAULT_THRESHOLD, Matcher, evaluate

from .util import median

PAIRS = Path(__file__).with_name("data") / "match_pairs.json"
ROUNDS = 5


def _clear_caches() -> None:
    for cached in (matching.score, matching._tokens, matching._similarity):
        cached.cache_clear()


def _time_scores(pairs: list[dict[str, Any]], cold: bool) -> list[float]:
    score = matching.score.__wrapped__  # the result cache would otherwise time a dict lookup
    samples = []
    for _ in range(ROUNDS):
        for pair in pairs:
            if cold:
                _clear_caches()
            started = time.perf_counter()
            score(pair["report"], pair["claim"])
            samples.append((time.perf_counter() - started) * 1e6)
    return samples


def run() -> dict[str, Any]:
    pairs: list[dict[str, Any]] = json.loads(PAIRS.read_text(encoding="utf-8"))
    threshold = Settings().match_threshold or DEFAULT_THRESHOLD
    quality = evaluate(pairs, Matcher(threshold))
    cold = _time_scores(pairs, cold=True)
    warm = _time_scores(pairs, cold=False)
    _clear_caches()
    return {
        "match_precision": quality["precision"],
        "match_recall": quality["recall"],
        "match_pairs": len(pairs),
        "match_threshold": threshold,
        "match_us_per_score_median": round(median(cold), 1),
        "match_us_per_score_warm_median": round(median(warm), 1),
    }


if __name__ == "__main__":
    print(run())
