"""A short soak (bench/bench_soak.py at a smaller size): a real `fieldcomms serve` under officers posting
updates and positions, public and control subscribers and polling readers, for about 15 s.

Zero errors: every answer 2xx/304, no stream dropped, every public update delivered to every public subscriber
exactly once, every update to every control subscriber exactly once, no internal update on a public stream,
and the server's memory flat. `make bench` runs the full soak (1,000 officers, 5,200 subscribers, 10 min).
"""

from __future__ import annotations

import pytest

from bench.bench_soak import Sizes, soak

pytestmark = pytest.mark.slow


def test_short_soak_has_no_errors_and_delivers_everything_exactly_once() -> None:
    sizes = Sizes(seconds=15, officers=100, public=200, control=20, readers=20, warmup=2, track_each=True)
    got = soak(sizes)
    print({k: v for k, v in got.items() if not isinstance(v, list)})
    assert got["soak_errors"] == 0, got
    assert got["soak_bad_answers"] == 0 and got["soak_dropped_streams"] == 0
    assert got["soak_missing_deliveries"] == 0 and got["soak_leaks"] == 0
    assert got["soak_duplicate_pairs"] == 0 and got["soak_missing_pairs"] == 0
    assert got["soak_subscribers_open_at_end"] == sizes.public + sizes.control
    # 100 officers: an update each every 30 s and a position every 10 s.
    assert got["soak_updates"] >= 0.8 * sizes.officers * sizes.seconds / 30
    assert got["soak_positions"] >= 0.8 * sizes.officers * sizes.seconds / 10
    assert got["soak_reads"] >= sizes.readers * (sizes.seconds // 5)
    assert got["soak_updates_checked"] > got["soak_updates"]  # the warm-up's updates are checked too
    assert got["soak_rss_growth_mb"] < 20
    assert got["soak_shutdown_s"] < 5
