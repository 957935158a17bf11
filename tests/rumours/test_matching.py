"""Matching public reports to known rumours, measured on the labelled sets in bench/data/match_pairs.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fieldcomms.rumours import matching
from fieldcomms.rumours.matching import DEFAULT_THRESHOLD, Matcher, evaluate, score

PAIRS_PATH = Path(__file__).resolve().parents[2] / "bench" / "data" / "match_pairs.json"
FLARES = "Protesters are planning to set off flares on Fargate"


DATA: dict[str, Any] = json.loads(PAIRS_PATH.read_text(encoding="utf-8"))
PAIRS: list[dict[str, Any]] = DATA["pairs"]
RUMOUR_SET: list[dict[str, Any]] = DATA["rumours"]
REPORTS: list[dict[str, Any]] = DATA["reports"]
CLAIMS = sorted({p["claim"] for p in PAIRS})


def test_the_labelled_set_is_big_balanced_and_well_formed() -> None:
    assert len(PAIRS) >= 80
    positives = sum(p["match"] for p in PAIRS)
    assert 0.4 <= positives / len(PAIRS) <= 0.6
    for pair in PAIRS:
        assert set(pair) == {"report", "claim", "match", "note"}
        assert isinstance(pair["match"], bool) and pair["report"].strip() and pair["claim"].strip() and pair["note"]
    assert len({(p["report"], p["claim"]) for p in PAIRS}) == len(PAIRS)
    hard = [p for p in PAIRS if not p["match"] and p["note"] in ("same-place", "same-topic-word", "near-miss")]
    assert len(hard) >= 30


def test_precision_and_recall_on_the_labelled_set() -> None:
    result = evaluate(PAIRS, Matcher())
    assert result["precision"] >= 0.9, result
    assert result["recall"] >= 0.9, result


def test_precision_and_recall_hold_on_every_fourth_pair() -> None:
    # A fixed slice, so a change tuned to the rest of the set shows up here as a drop.
    result = evaluate(PAIRS[3::4], Matcher())
    assert result["precision"] >= 0.9, result
    assert result["recall"] >= 0.9, result


def test_the_report_set_is_large_varied_and_keeps_a_test_split_aside() -> None:
    assert len(RUMOUR_SET) >= 40 and len(REPORTS) >= 400
    assert len({r["id"] for r in RUMOUR_SET}) == len(RUMOUR_SET)
    assert len({r["event"] for r in RUMOUR_SET}) >= 5  # marches, football, concerts, floods, fires, festivals
    ids = {r["id"]: r["event"] for r in RUMOUR_SET}
    for report in REPORTS:
        assert report["text"].strip() and report["split"] in ("train", "test")
        assert report["rumour"] is None or ids[report["rumour"]] == report["event"]
    assert sum(r["rumour"] is None for r in REPORTS) >= len(REPORTS) / 3
    test = [r for r in REPORTS if r["split"] == "test"]
    assert abs(len(test) / len(REPORTS) - 0.25) < 0.01
    assert len({r["text"] for r in REPORTS}) == len(REPORTS)


def _report_quality(split: str) -> tuple[float, float]:
    """Precision and recall of the best match of each report among its event's rumours."""
    by_event: dict[str, list[dict[str, Any]]] = {}
    for rumour in RUMOUR_SET:
        by_event.setdefault(rumour["event"], []).append(rumour)
    reports = [r for r in REPORTS if r["split"] == split]
    predicted = right = 0
    for report in reports:
        found = Matcher().matches(report["text"], by_event[report["event"]], limit=1)
        if found:
            predicted += 1
            right += found[0]["rumour_id"] == report["rumour"]
    return right / predicted, right / sum(r["rumour"] is not None for r in reports)


def test_reports_written_as_people_write_find_their_rumour() -> None:
    # Floors against regression at the issue's targets (measured: train 0.989 / 0.969, test 1.0 / 0.906; the test
    # split was only ever measured, never looked at for tuning).
    precision, recall = _report_quality("train")
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)
    precision, recall = _report_quality("test")
    assert precision >= 0.95 and recall >= 0.9, (precision, recall)


def test_the_word_index_finds_every_rumour_that_brute_force_scoring_would() -> None:
    matcher = Matcher()
    for report in REPORTS[::3]:
        rumours = [r for r in RUMOUR_SET if r["event"] == report["event"]]
        found = {m["rumour_id"] for m in matcher.matches(report["text"], rumours, limit=100)}
        brute = {r["id"] for r in rumours if score(report["text"], r["claim"]) >= DEFAULT_THRESHOLD}
        assert brute <= found, report["text"]
        assert matcher.match_all([report["text"]], rumours) == [matcher.matches(report["text"], rumours)]


def _brute_force(text: str, rumours: list[dict[str, Any]], threshold: float = DEFAULT_THRESHOLD) -> list[Any]:
    """The matcher's definition, rumour by rumour and word by word, with no index: `score`, plus `UNIQUE_BONUS`
    times the best similarity of a report word to a topic word that no other claim of the set has."""
    topics = {r["claim"]: {t.text for t in matching._tokens(r["claim"], True) if t.weight == 1.0} for r in rumours}
    report_words = [t.text for t in matching._tokens(text.lower(), False)]
    found = []
    for rumour in rumours:
        value = score(text, rumour["claim"])
        if value <= 0:
            continue
        others = set().union(*(words for claim, words in topics.items() if claim != rumour["claim"]))
        bonus = max((matching._similarity(word, r) for word in topics[rumour["claim"]] - others
                     for r in report_words), default=0.0)
        value = round(min(1.0, value + matching.UNIQUE_BONUS * bonus), 3)
        if value >= threshold:
            found.append({"rumour_id": rumour["id"], "score": value})
    return sorted(found, key=lambda m: (-m["score"], m["rumour_id"]))


FIVE_HUNDRED = [{"id": f"r{i:03}", "claim": f"{RUMOUR_SET[i % 50]['claim']} near {place}"}
                for i, place in enumerate(["Fargate", "the Moor", "West Street", "Division Street", "Barkers Pool",
                                           "the station", "Hillsborough", "the Wicker", "Kelham Island",
                                           "the Peace Gardens"] * 50)]


@pytest.mark.parametrize("threshold", [DEFAULT_THRESHOLD, 0.1])
def test_the_indexed_matcher_gives_exactly_what_scoring_every_rumour_gives(threshold: float) -> None:
    # The index (`_Index`), the bound that sets rumours aside and the look-up scoring must change no result: every
    # report and pair of the labelled set, against its event's rumours and against all 50, gets the same
    # matches with the same scores as brute force, at the default threshold and at a far lower one. (Below about
    # 0.05 they part: a rumour sharing only generic words, "city", scores a few thousandths by brute force and is
    # never looked at through the index.)
    matcher = Matcher(threshold)
    by_event: dict[str, list[dict[str, Any]]] = {}
    for rumour in RUMOUR_SET:
        by_event.setdefault(rumour["event"], []).append(rumour)
    texts = [(r["text"], by_event[r["event"]]) for r in REPORTS] + [(p["report"], RUMOUR_SET) for p in PAIRS]
    for text, rumours in texts:
        for candidates in (rumours, RUMOUR_SET):
            assert matcher.matches(text, candidates, limit=1000) == _brute_force(text, candidates, threshold), text


def test_the_indexed_matcher_is_exact_against_500_rumours() -> None:
    matcher = Matcher()
    for report in REPORTS[::4]:
        assert matcher.matches(report["text"], FIVE_HUNDRED, limit=1000) == _brute_force(
            report["text"], FIVE_HUNDRED), report["text"]


def test_weights_and_credits_are_whole_tenths() -> None:
    # The scores are summed in whole tenths and hundredths so that the indexed matcher, which adds the same terms
    # in another order, gets exactly what `score` gets. A weight or credit off the grid would break that.
    for value in (matching.GENERIC_WEIGHT, matching.PLACE_WEIGHT, 1.0, matching.FUZZY_CREDIT,
                  matching.PREFIX_CREDIT, matching.NEG_CREDIT, matching.RELATED_CREDIT, matching.EVIDENCE_FULL):
        assert round(value * 10) / 10 == value, value


def test_a_changed_rumour_is_matched_by_its_new_claim() -> None:
    # The index is cached per set of claims: an edited claim must be seen at once, not the old words.
    matcher = Matcher()
    rumours = [dict(r) for r in RUMOUR_SET if r["event"] == "march"]
    assert [m["rumour_id"] for m in matcher.matches("snipers on the roof", rumours, limit=1)] == ["m01"]
    rumours[0] = {"id": "m01", "claim": "The tram stop on Fargate is closed"}
    assert "m01" not in [m["rumour_id"] for m in matcher.matches("snipers on the roof", rumours)]
    assert [m["rumour_id"] for m in matcher.matches("no trams at the fargate stop", rumours, limit=1)] == ["m01"]
    # Two rumours with the same claim (logged twice) are both found, as brute force finds them.
    twice = [*rumours, {"id": "m01-again", "claim": "The tram stop on Fargate is closed"}]
    found = matcher.matches("no trams at the fargate stop", twice, limit=10)
    assert found == _brute_force("no trams at the fargate stop", twice)
    assert [m["rumour_id"] for m in found][:2] == ["m01", "m01-again"]


@pytest.mark.parametrize(("report", "rumour_id"), [
    ("guys with rifles on top of the buildings", "snipers"),
    ("they're trapping everyone inside, nobody can leave", "kettle"),
    ("police gassed people by the City Hall", "teargas"),
    ("snipper on roof", "snipers"),
    ("my little girl is lost near the city hall", None),
    ("thank you officers, great job today", None),
])
def test_the_issue_paraphrases(report: str, rumour_id: str | None) -> None:
    rumours = [{"id": "snipers", "claim": "Police snipers on the roofs around Barkers Pool"},
               {"id": "kettle", "claim": "The demonstration area is a kettle: nobody will be let out"},
               {"id": "teargas", "claim": "Police used tear gas on protesters by the City Hall"}]
    found = Matcher().matches(report, rumours, limit=1)
    assert (found[0]["rumour_id"] if found else None) == rumour_id
    assert all(0.0 <= m["score"] <= 1.0 for m in found)


def _event(name: str) -> list[dict[str, Any]]:
    return [r for r in RUMOUR_SET if r["event"] == name]


@pytest.mark.parametrize(("event", "report", "rumour_id"), [
    # The issue's own examples, against every rumour of the march (eleven of them), not just three.
    ("march", "Guys with rifles on top of the buildings by Barker's Pool", "m01"),
    ("march", "they're trapping everyone inside, nobody can leave", "m02"),
    ("march", "police gassed people by the City Hall", "m03"),
    ("march", "snipper on roof", "m01"),
    ("march", "my little girl is lost near the city hall", None),
    ("march", "where can I charge my phone?", None),
    # Being held in, however it is said: the negation belongs to the idea and is no contradiction.
    ("march", "cops not letting anyone out of the square", "m02"),
    ("march", "all the exits are blocked, we can't get out", "m02"),
    ("football", "they're keeping the away fans in after the game", "f01"),
    # Paraphrase through the thesaurus and its related ideas.
    ("flood", "boil water notice for the whole city", "w03"),
    ("flood", "the dam wall at ulley has given way", "w01"),
    ("march", "EDL heading here to kick off with the marchers", "m10"),
    ("concert", "security are taking people's handbags off them", "c05"),
    # "The ground" is wherever the match is; Hillsborough is not somewhere else.
    ("football", "someone got knifed near hillsborough", "f06"),
    # The words a crowd uses (UK police sprays, slang for stabbing, arrest, fake tickets, toilets).
    ("march", "PAVA spray used on people by the city hall", "m03"),
    ("march", "students being carted off by the cops at the uni", "m09"),
    ("football", "someone got shanked near the ground", "f06"),
    ("concert", "loads of knockoff tickets going round", "c04"),
    ("concert", "portaloos all shut at the arena", "c07"),
    ("fire", "suspicious package found on fargate before the fire", "x01"),
    # Misspelt synonyms: one slip from one thesaurus word, or the same sound.
    ("march", "marksmin on the rooftops", "m01"),
    ("march", "students getting detianed by the uni", "m09"),
    ("march", "polise fotographing everyone for a databse", "m05"),
    # Something else said with the same words.
    ("concert", "is the car park open late", None),
    ("football", "thank you officers, great job today", None),
])
def test_paraphrase_slang_and_misspelling(event: str, report: str, rumour_id: str | None) -> None:
    found = Matcher().matches(report, _event(event), limit=1)
    assert (found[0]["rumour_id"] if found else None) == rumour_id, found
    assert all(0.0 <= m["score"] <= 1.0 for m in found)


@pytest.mark.parametrize(("word", "idea"), [
    ("snipper", "sniper"), ("marksmin", "sniper"), ("detianed", "arrest"), ("kettel", "kettle"),
    ("foto", "photograph"), ("contianed", "kettle"), ("confiscted", "confiscate"), ("evacuted", "evacuate"),
    # Real words one letter from a thesaurus word are left alone.
    ("closer", "closer"), ("lifter", "lifter"), ("planned", "plan"),
])
def test_misspelt_words_find_their_thesaurus_entry(word: str, idea: str) -> None:
    assert matching._canonical(word) == idea


def test_the_same_thing_at_another_named_place_is_still_set_apart() -> None:
    # The vague-place rule must not undo the "elsewhere" rule where both sides name their place.
    assert score("police dogs loose at the Winter Garden", "Police dogs have been set on the crowd at the Peace "
                 "Gardens") < DEFAULT_THRESHOLD
    assert score("flares being let off on the Moor", FLARES) < score("flares being let off on Fargate", FLARES) / 1.5


def test_evaluate_counts() -> None:
    pairs = [
        {"report": "flares on fargate", "claim": FLARES, "match": True},
        {"report": "flares on fargate", "claim": FLARES, "match": False},
        {"report": "the coffee shop is open", "claim": FLARES, "match": True},
        {"report": "the coffee shop is open", "claim": FLARES, "match": False},
    ]
    assert evaluate(pairs, Matcher()) == {"precision": 0.5, "recall": 0.5, "tp": 1, "fp": 1, "fn": 1, "tn": 1}


def test_the_issue_examples() -> None:
    assert score("heard they'll let off FLARES on fargate later??", FLARES) >= DEFAULT_THRESHOLD
    assert score("the coffee shop on Fargate is open", FLARES) < DEFAULT_THRESHOLD


@pytest.mark.parametrize(
    ("report", "claim"),
    [
        ("SNIPERS ON THE ROOFS!!!", "Police snipers on the roofs"),  # case and punctuation
        ("roofs have got police snipers on them", "Police snipers on the roofs"),  # word order
        ("a sniper on a roof", "Police snipers on the roofs"),  # plurals
        ("snipres on the roofs", "Police snipers on the roofs"),  # a typo
        ("the cops have snipers up on the roof", "Police snipers on the roofs"),  # slang
        ("they're kettling us in the demo area", "The demonstration area is a kettle"),
    ],
)
def test_what_must_not_hide_a_match(report: str, claim: str) -> None:
    assert score(report, claim) >= DEFAULT_THRESHOLD


@pytest.mark.parametrize(
    ("report", "claim"),
    [
        ("the coffee shop on Fargate is open", FLARES),
        ("big screen on fargate showing the speeches", FLARES),
        ("where is the demonstration area?", "The demonstration area is a kettle"),
        ("tear gas used in London last year", "Police used tear gas at Devonshire Green"),
    ],
)
def test_a_shared_place_or_topic_word_alone_is_not_a_match(report: str, claim: str) -> None:
    assert score(report, claim) < DEFAULT_THRESHOLD


@pytest.mark.parametrize("claim", CLAIMS)
def test_a_claim_matches_itself_fully(claim: str) -> None:
    assert score(claim, claim) == 1.0


@pytest.mark.parametrize("text", ["", "   ", "??!", "the and of", "heard it later lol"])
def test_reports_without_content_match_nothing(text: str) -> None:
    assert score(text, FLARES) == 0.0
    assert Matcher().matches(text, [{"id": "r1", "claim": FLARES}]) == []


RUMOURS = [
    {"id": "snipers", "claim": "Police snipers on the roofs"},
    {"id": "flares", "claim": FLARES},
    {"id": "flares-lane", "claim": "Flares will be set off at Bramall Lane"},
    {"id": "kettle", "claim": "The demonstration area is a kettle"},
]


def test_matches_ranks_best_first_and_keeps_only_those_above_threshold() -> None:
    found = Matcher().matches("heard they'll let off FLARES on fargate later??", RUMOURS)
    # The same claim at another place (Bramall Lane) may follow, but far behind: it is half as likely at most.
    assert [m["rumour_id"] for m in found][:1] == ["flares"]
    assert all(m["rumour_id"] == "flares-lane" and m["score"] <= found[0]["score"] / 2 for m in found[1:])
    assert 0 < found[0]["score"] <= 1 and round(found[0]["score"], 3) == found[0]["score"]
    loose = Matcher(threshold=0.01).matches("flares on fargate", RUMOURS)
    assert [m["rumour_id"] for m in loose][:2] == ["flares", "flares-lane"]
    assert [m["score"] for m in loose] == sorted((m["score"] for m in loose), reverse=True)


def test_matches_honours_limit() -> None:
    everything = Matcher(threshold=0.0).matches("police flares snipers kettle", RUMOURS, limit=2)
    assert len(everything) == 2
    assert Matcher(threshold=0.0).matches("police flares snipers kettle", RUMOURS, limit=0) == []


@pytest.mark.parametrize("threshold", [-0.1, 1.5])
def test_threshold_must_be_a_score(threshold: float) -> None:
    with pytest.raises(ValueError):
        Matcher(threshold)


WORDS = ["snipers", "roofs", "Fargate", "flares", "police", "coffee", "heard", "the", "on", "kettle", "later",
         "they'll", "Devonshire", "Green", "tear", "gas", "horses", "no", "trams", "closed", "city", "centre"]
report_texts = st.lists(st.sampled_from(WORDS), max_size=12).map(" ".join)


@given(report_texts, st.sampled_from(CLAIMS))
def test_score_is_between_zero_and_one(report: str, claim: str) -> None:
    assert 0.0 <= score(report, claim) <= 1.0


@given(report_texts, st.sampled_from(CLAIMS))
def test_the_report_case_does_not_matter(report: str, claim: str) -> None:
    assert score(report.upper(), claim) == score(report.lower(), claim) == score(report, claim)


@given(st.lists(st.sampled_from(WORDS), max_size=12), st.sampled_from(CLAIMS),
       st.lists(st.sampled_from([" ", ", ", "!! ", "... ", " - ", "?? ", " (", ") "]), min_size=12, max_size=12))
def test_punctuation_between_words_does_not_matter(words: list[str], claim: str, separators: list[str]) -> None:
    punctuated = "".join(w + sep for w, sep in zip(words, separators, strict=False))
    assert score(punctuated, claim) == score(" ".join(words), claim)


@given(st.text(max_size=200), st.sampled_from(CLAIMS))
def test_any_text_scores_without_error(report: str, claim: str) -> None:
    assert 0.0 <= score(report, claim) <= 1.0
