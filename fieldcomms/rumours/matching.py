"""Match a report from the public against the known rumours of its event.

A report repeats a rumour when it carries the rumour's *distinctive* words: "flares" for "Protesters are planning
to set off flares on Fargate", not just "Fargate". The score is a weighted F-measure (beta 1.5, so covering the
claim matters more than adding chatter) of word overlap between report and claim, after normalising both so that
case, punctuation, word order, plurals, small typos, common slang and filler do not matter. Weights say how much
a shared word tells about a shared claim:

- filler ("heard", "they'll", "later") is dropped;
- words nearly every rumour at a policed event contains ("police", "protesters", "crowd") count 0.3;
- places count 0.5, because many unrelated reports mention the same street. A word is taken for a place when it
  follows "on", "at", "outside"..., ends or precedes a place noun ("Devonshire *Green*", "demonstration *area*"),
  or, in the claim only, is capitalised mid-sentence (an officer's capitals mean something, a phone's do not);
- everything else counts 1.

Three rules then catch what overlap cannot: a report sharing none of the claim's topic words (weight 1) shares at
most a place (x0.5); a report naming a place and none of the claim's is about somewhere else (x0.5); and a report
that negates where the claim does not, or the reverse ("no toilets at the Arena" against "the Arena toilets are
past the bar"), says something else (x0.6).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from rapidfuzz.distance import OSA

DEFAULT_THRESHOLD = 0.3
BETA = 1.0
GENERIC_WEIGHT = 0.3
PLACE_WEIGHT = 0.5
FUZZY_CREDIT = 0.8
PREFIX_CREDIT = 0.9
ELSEWHERE_FACTOR = 0.5
POLARITY_FACTOR = 0.6
OFF_TOPIC_FACTOR = 0.5
NEG_CREDIT = 0.8
UNIQUE_BONUS = 0.1
EVIDENCE_FULL = 2.0
EVIDENCE_POWER = 1.0
_NEGATIVE = frozenset({"halt", "neg"})

_STOPWORDS = frozenset(
    """
    a about above after again all also am an and any anyone apparently are around as at back be because been
    being but by can could d did do does doing dont down during each even every everyone for from get gets
    getting go going gonna got had has have having he hear heard her here hers him his how i if im in into is it
    its ive just know last later left like ll lol m me might mine more most much must my near next now of off oh
    omg on once only or other our out outside over past please pls re really right s said say says see seen she
    should so some someone something soon still such t than that thats the their theirs them then there theres
    these they theyll theyre this those through to today tonight too true u under up ur us ve very want was we
    were what when where which while who why will with without would y yeah yes you youll your yours
    way moment time news
    """.split()
)

# Multi-word slang and paraphrase first, so that its words do not also count one by one ("old bill" is not about
# bills, "on top of the buildings" is a roof). Each names one idea of the public-order thesaurus below.
_PHRASES: tuple[tuple[str, str], ...] = (
    (r"\bold bill\b", "police"),
    (r"\b(?:tear|cs|pepper) ?(?:gas(?:s?ed|s?ing)?|spray(?:ed|ing)?)\b", "teargas"),
    (r"\bteargass?(?:ed|ing)\b", "teargas"),
    (r"\beyes (?:are |were )?(?:burning|stinging|streaming)\b", "teargas"),
    (r"\b(?:gas|gassed|gassing|gasses)\b", "teargas"),
    (r"\b(?:call(?:ed|ing)?|is|are|been) off\b", "halt"),
    (r"\b(show|gig|concert|game|match|march|festival|derby|race|parade)s off\b", r"\1 halt"),
    (r"\b(?:pull(?:ed|ing|s)?|drop(?:ped|ping|s)?) out\b", "halt"),
    (r"\b(tram|bus) stops?\b", r"\1stop"),
    (r"\btrain station\b", "station"),
    (r"\b(?:kick(?:ed|ing|s)?|kicks) off\b", "fight"),
    (r"\bpunch ?ups?\b", "fight"),
    (r"\b(?:set|let|setting|letting|sets|lets) off\b", "ignite"),
    (r"\bsmoke ?bombs?\b", "flare"),
    (r"\b(?:penned|boxed|hemmed|locked|held|kept|keeping|keep|holding|hold|stuck|shut) (?:us |them |everyone |people |fans )?(?:in|inside)\b", "kettle"),
    (r"\b(?:held|holding|hold|kept|keeping|keep) (?:us |them |everyone |people |fans |the \w+ |\w+ )?back\b", "kettle"),
    (r"\b(?:let|letting|lets) (?:us |you |them |anyone |anybody |everyone |people |nobody |no one )?(?:out|leave)\b", "kettle"),
    (r"\b(?:let|letting|lets|allowed|allow) (?:us |you |them |anyone |anybody |people )?back (?:in|inside)\b", "reentry"),
    (r"\bre ?entry\b", "reentry"),
    (r"\bprotest pen\b", "kettle"),
    (r"\bwater ?can+ons?\b", "watercannon"),
    (r"\bfacial recognition\b", "photograph"),
    (r"\bon horseback\b", "horse"),
    (r"\b(?:run|ran|knocked|mowed) (?:over|down)\b", "hit"),
    (r"\b(?:did ?n[o']?t|didnt|never) (?:survive|make it)\b", "die"),
    (r"\b(?:far|extreme) right\b", "edl"),
    (r"\benglish defen[cs]e league\b", "edl"),
    (r"\b(?:on )?top of (?:the |a )?(?:buildings?|houses?|shops?|roofs?)\b", "roof"),
    (r"\b(?:turn(?:ed|ing|s)?) (?:people |fans |us |them |everyone )?away\b", "refuse"),
    (r"\b(?:refused|denied) (?:entry|access)\b", "refuse"),
    (r"\b(?:tak(?:e|es|ing)|took) ((?:\w+ )?(?:\w+ )?)off (?:them|us|people|you)\b", r"confiscate \1"),
    (r"\blost (?:her|his|their) voice\b", "ill"),
    (r"\b(?:main|headline|top|star) (?:act|band|artist|singer)\b", "headliner"),
    (r"\bsupport (?:act|band)\b", "support"),
    (r"\bpushed back\b", "late"),
    (r"\b(?:not )?starting (?:till|until)\b", "late"),
    (r"\b(?:gave|give|giving|gives) way\b", "collapse"),
    (r"\b(?:cave|caved|caving|fall(?:en|ing|s)?|fell|came|come|coming|blew|blown) (?:in|down|over)\b", "collapse"),
    (r"\b(?:fallen|fell) into\b", "collapse"),
    (r"\btap water\b", "tapwater"),
    (r"\bdrinking water\b", "tapwater"),
    (r"\bwater (?:from|in) the tap\b", "tapwater"),
    (r"\bboil water\b", "contaminate"),
    (r"\bpower cut\b", "power"),
    (r"\bbreak(?:ing)? into\b", "loot"),
    (r"\bbroke into\b", "loot"),
    (r"\bunder ?water\b", "flood"),
    (r"\b(?:set|setting|sets) fire\b", "arson"),
    (r"\bon purpose\b", "arson"),
    (r"\bput(?:ting)? (?:stuff|something|things|drugs) in (?:drinks|people's drinks|peoples drinks)\b", "spike"),
    (r"\b(?:run|running|ran|go|going|went|storm(?:ing|ed)?|invad(?:e|ing|ed)) (?:on(?:to)? )?(?:the )?pitch\b", "invade"),
    (r"\bpitch invasion\b", "invade"),
    (r"\bfull ?time\b", "finalwhistle"),
    (r"\bfinal whistle\b", "finalwhistle"),
    (r"\bend of the (?:game|match)\b", "finalwhistle"),
    (r"\b(?:moving|moved|move) (?:everyone|people|residents|us) out\b", "evacuate"),
    (r"\bleave their homes\b", "evacuate"),
    (r"\bexplosive device\b", "bomb"),
    (r"\b(?:everyone|everybody|people|all) out of\b", "evacuate"),
    (r"\bset (?:the )?dogs on\b", "dog attack"),
    (r"\bon stage\b", "play"),
    (r"\bdemo\b", "demonstration"),
    (r"\bmanc\b", "manchester"),
    (r"\bdevvy\b", "devonshire"),
    (r"\bgig\b", "concert"),
    (r"\bsupertram\b", "tram"),
)
_PHRASE_RE = [(re.compile(pattern), replacement) for pattern, replacement in _PHRASES]

# One word per idea: the spellings, slang and near-synonyms a crowd uses for the same thing. Grouped by the kind of
# event they come from; every group was written as a thesaurus entry, not from the labelled reports.
_SYNONYMS: dict[str, tuple[str, ...]] = {
    # people and public order
    "police": ("cop", "copper", "fed", "pig", "plod", "bobby", "officer", "filth", "feds", "constable", "met"),
    "sniper": ("marksman", "marksmen", "sharpshooter", "shooter", "rifle", "gun", "gunman", "gunmen", "armed",
               "scope", "firearm", "firearms"),
    "kettle": ("kettling", "kettled", "contain", "containment", "containing", "trap", "trapped", "trapping",
               "encircle", "surrounded"),
    "horse": ("mounted", "cavalry", "horseback"),
    "charge": ("charging", "charged", "trample", "trampling", "trampled", "rode", "ride"),
    "flare": ("flair", "pyro", "pyrotechnic", "pyros"),
    "fight": ("brawl", "fighting", "rumble", "fought", "scuffle", "ruck", "trouble", "clash", "clashes", "violence"),
    # Cancelled, closed, stopped, shut, "no trams": to a crowd these are one claim, "it is not happening".
    "halt": (
        "stop", "stopped", "cancel", "cancelled", "canceled", "scrap", "scrapped", "axed", "close", "closed",
        "shut", "closing", "closure", "blocked", "halted", "suspended", "postpone", "postponed", "abandon",
        "abandoned", "ban", "banned", "banning", "off", "locked",
    ),
    # Plain negation says "not happening" too, but far less surely than "cancelled": it counts as a generic word.
    "neg": ("no", "not", "nobody", "none", "never", "nothing", "cant", "cannot", "wont", "isnt", "arent", "wasnt",
            "werent", "aint", "dont", "doesnt", "didnt"),
    "ignite": ("light", "lit", "lighting"),
    "bring": ("brought", "bringing"),
    "database": ("file", "files", "record", "register", "list", "logging", "log", "logged", "profile"),
    "photograph": ("photo", "photographing", "filming", "film", "picture", "pic", "snap", "snapping", "camera",
                   "recording", "cctv"),
    "arrest": ("nick", "nicked", "nicking", "detain", "detained", "detaining", "lift", "lifted", "lifting",
               "cuffed", "arrested"),
    "student": ("uni", "university", "undergrad", "union"),
    "edl": ("fascist", "fascists", "nazi", "nazis"),
    "attack": ("smash", "attacking", "assault", "ambush"),
    "die": ("dead", "died", "killed", "death", "dying", "fatal", "dies"),
    "hit": ("struck", "knocked"),
    "van": ("vehicle", "carrier", "truck", "lorry"),
    "stab": ("stabbing", "stabbed", "knifed", "knife", "knifing", "knives"),
    "protester": ("protestor", "demonstrator", "marcher", "protest", "activist", "activists"),
    "dog": ("dogs", "k9", "canine", "alsatian", "sniffer"),
    "bite": ("bit", "bitten", "mauled"),
    "search": ("searching", "searched", "frisk", "frisked", "patted"),
    # places and things
    "roof": ("rooftop",),
    "station": ("railway",),
    "street": ("st",),
    "road": ("rd",),
    "square": ("sq",),
    "center": ("centre", "town"),
    "entrance": ("gate", "gates", "door", "doors", "turnstile", "turnstiles", "entry", "way in"),
    "refuse": ("refused", "rejected", "rejecting", "refusing", "barred"),
    "ticket": ("tickets", "eticket", "etickets"),
    "tram": ("trams",),
    "match": ("game", "derby", "fixture"),
    # concerts
    "concert": ("show", "gig"),
    "ill": ("sick", "poorly", "unwell", "hospital", "illness"),
    "headliner": ("star", "singer"),
    "crush": ("crushed", "crushing", "squeeze", "squeezed", "crowding", "overcrowded", "stampede"),
    "fake": ("counterfeit", "forged", "forgery", "fraudulent", "dodgy", "fakes", "bogus"),
    "bag": ("bags", "backpack", "backpacks", "handbag", "handbags", "rucksack", "rucksacks"),
    "confiscate": ("confiscated", "confiscating", "seized", "seize", "bin", "binned"),
    "toilet": ("loo", "loos", "toilets", "bathroom", "bathrooms", "lavatory", "wc"),
    "queue": ("line", "queueing", "queuing"),
    "late": ("delayed", "delay", "later"),
    # floods and fires
    "dam": ("reservoir",),
    "burst": ("breached", "breach", "broken", "failed", "broke", "bursting"),
    "collapse": ("collapsed", "collapsing", "gone", "crumbled"),
    "fire": ("flames", "blaze", "burning", "ablaze", "inferno"),
    "camp": ("tent", "tents", "campsite", "camping", "campers", "camper"),
    "play": ("perform", "performing", "playing", "plays", "played", "performance"),
    "fan": ("supporter", "supporters", "fans"),
    "evacuate": ("evacuating", "evacuation", "evacuated", "clearing", "cleared"),
    "contaminate": ("contaminated", "poisoned", "poison", "dirty", "sewage", "unsafe", "polluted"),
    "loot": ("looting", "looters", "looted", "robbing", "robbed", "thieves", "thief", "stealing", "burgle"),
    "power": ("electricity", "electric", "blackout", "outage"),
    "flood": ("flooded", "flooding", "floods", "pouring"),
    "bomb": ("explosion", "explosive", "terror", "terrorist", "blast", "bombing", "exploded", "planted"),
    "toxic": ("poisonous", "chemicals", "chemical", "fumes", "asbestos", "hazardous"),
    "arson": ("torched", "torch", "burnt", "deliberately", "deliberate", "arsonist"),
    "storm": ("lightning", "weather", "thunder", "wind", "gale"),
    "spike": ("spiked", "spiking"),
    "measles": ("outbreak",),
    "invade": ("invasion",),
}

# Words nearly every rumour at a policed event shares: they say little about which rumour a report repeats.
_GENERIC = frozenset(
    """
    police protester crowd people fan everyone group lot city area event plan happen start march run
    use come make take bring being wear keep neg
    route ticket away match concert festival site flood fire event day night
    """.split()
)

# The word after one of these is usually where something happens ("at the station", "on Fargate").
_LOCATIVE = frozenset("on at in outside near by into onto from along behind opposite inside".split())

# Nouns that end place names; the word before one is part of the name ("Devonshire Green", "demonstration area").
_PLACE_HEADS = frozenset(
    """
    area zone street road lane square park garden green hall center centre pool market station
    avenue row bridge arena ground stadium library church cathedral hospital school university pub shop bar
    cafe museum theatre hotel
    """.split()
)

# A report that asks for information ("where is...", "what time...", "is there a...") asks; it does not pass a
# claim on, even when it names the claim's subject ("what time is the main act on" is not "the headliner pulled out").
_INFO_REQUEST = re.compile(
    r"^\W*(?:where|what time|when|how (?:do|can|long|far|much|many|often)|which|is there|are there|can i|can we|"
    r"do i|do we|should i|any (?:\w+ )?(?:near|around|nearby)|who do)\b",
    re.IGNORECASE)
INFO_FACTOR = 0.5

_WORD_RE = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")


def _stem(word: str) -> str:
    """A deliberately crude suffix stripper: plurals and -ing/-ed, enough for prefix comparison to do the rest."""
    if len(word) <= 3:
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            # "kettling" -> "kettl", "stopped" -> "stop": undouble so both sides agree.
            if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiouls":
                word = word[:-1]
            break
    return word


def _build_canon() -> dict[str, str]:
    canon: dict[str, str] = {}
    for head, variants in _SYNONYMS.items():
        for variant in (head, *variants):
            canon[variant] = head
            canon[_stem(variant)] = head
    return canon


_CANON = _build_canon()


def _canonical(word: str) -> str:
    if word in _CANON:
        return _CANON[word]
    stem = _stem(word)
    return _CANON.get(stem, stem)


@dataclass(frozen=True)
class _Token:
    text: str
    weight: float
    place: bool


def _words(text: str) -> list[str]:
    """Lowercase words with punctuation gone, so that "set, off!" and "set off" read the same."""
    text = text.lower().replace("\u2019", "'")
    # Contractions are filler ("they'll", "it's"); fold them into one stopword rather than leave "ll" around.
    text = " ".join(w.replace("'", "") for w in _WORD_RE.findall(text))
    for pattern, replacement in _PHRASE_RE:
        text = pattern.sub(replacement, text)
    return text.split()


def _capitalised(original: str) -> set[str]:
    """Words written with a capital mid-sentence: in an officer's claim, names of places and venues."""
    names: set[str] = set()
    sentence_start = True
    for match in re.finditer(r"[^\W_]+(?:['\u2019][^\W_]+)*|[.!?]", original):
        word = match.group()
        if word in ".!?":
            sentence_start = True
            continue
        if not sentence_start and word[:1].isupper() and not word.isupper():
            names.add(_canonical(re.sub(r"['\u2019]", "", word.lower())))
        sentence_start = False
    return names


def _is_place(words: Sequence[str], i: int, canon: str) -> bool:
    if canon in _PLACE_HEADS or (i + 1 < len(words) and _canonical(words[i + 1]) in _PLACE_HEADS):
        return True
    if i >= 1 and words[i - 1] in _LOCATIVE:
        return True
    # "at the station", but not "caused by a bomb": a place takes "the" far more often than "a".
    return i >= 2 and words[i - 1] == "the" and words[i - 2] in _LOCATIVE


@lru_cache(maxsize=4096)
def _tokens(text: str, trust_case: bool) -> tuple[_Token, ...]:
    names = _capitalised(text) if trust_case else set()
    words = _words(text)
    found: dict[str, _Token] = {}
    for i, raw in enumerate(words):
        if raw in _STOPWORDS or raw.isdigit():
            continue
        word = _canonical(raw)
        if word in _STOPWORDS or len(word) < 2:
            continue
        place = word in names or _is_place(words, i, word)
        weight = GENERIC_WEIGHT if word in _GENERIC else PLACE_WEIGHT if place else 1.0
        if word in found:
            weight = min(weight, found[word].weight)
            place = place or found[word].place
        found[word] = _Token(word, weight, place)
    return tuple(found.values())


# Word pairs repeat across reports and rumours of one event; edit distance is the cost worth caching.
@lru_cache(maxsize=65536)
def _similarity(a: str, b: str) -> float:
    if a == b:
        return 1.0
    if a in _NEGATIVE and b in _NEGATIVE:
        return NEG_CREDIT
    short, long_ = sorted((a, b), key=len)
    if len(short) >= 4 and long_.startswith(short) and len(long_) - len(short) <= 3:
        return PREFIX_CREDIT
    if len(short) >= 5:
        # One slip for words of five to seven letters, two beyond: "snipres", "manchestr", "fargte".
        allowed = 1 if len(long_) <= 7 else 2
        if OSA.distance(a, b, score_cutoff=allowed) <= allowed:
            return FUZZY_CREDIT
    return 0.0


def _coverage(side: Sequence[_Token], other: Sequence[_Token]) -> float:
    return _covered(side, other)[0]


def _covered(side: Sequence[_Token], other: Sequence[_Token]) -> tuple[float, float]:
    """(share of `side`'s weight that `other` covers, the covered weight itself)."""
    total = covered = 0.0
    for token in side:
        total += token.weight
        best = 0.0
        for candidate in other:
            best = max(best, _similarity(token.text, candidate.text))
            if best == 1.0:
                break
        covered += token.weight * best
    return (covered / total if total else 0.0), covered


# Officers re-read the same reports against the same rumours; the answer never changes.
@lru_cache(maxsize=65536)
def score(report_text: str, claim: str) -> float:
    """How strongly a report repeats a claim, from 0 (unrelated) to 1 (the same words), rounded to 3 decimals."""
    claim_tokens = _tokens(claim, True)
    # A report's own capitalisation is random on a phone, so it is ignored; a word the claim marks as a place is a
    # place on both sides.
    by_text = {t.text: t for t in claim_tokens}
    report_tokens = tuple(by_text.get(t.text, t) for t in _tokens(report_text.lower(), False))
    if not claim_tokens or not report_tokens:
        return 0.0
    recall, evidence = _covered(claim_tokens, report_tokens)
    # A short claim cannot offer more evidence than it holds ("The march has been banned").
    full = min(EVIDENCE_FULL, sum(t.weight for t in claim_tokens))
    precision = _coverage(report_tokens, claim_tokens)
    if recall == 0 or precision == 0:
        return 0.0
    beta2 = BETA * BETA
    value = (1 + beta2) * precision * recall / (beta2 * precision + recall)
    if _elsewhere(claim_tokens, report_tokens):
        value *= ELSEWHERE_FACTOR
    if _off_topic(claim_tokens, report_tokens):
        value *= OFF_TOPIC_FACTOR
    # "No toilets at the Arena" and "the Arena toilets are past the bar" share every noun and mean the opposite.
    if any(t.text in _NEGATIVE for t in claim_tokens) != any(t.text in _NEGATIVE for t in report_tokens):
        value *= POLARITY_FACTOR
    if _INFO_REQUEST.match(report_text):
        value *= INFO_FACTOR
    # One shared idea is thin evidence however short the report: "my cat is missing since the flood" shares all
    # it says of "Meadowhall is flooded". A topic word and a place, or two topic words, are enough.
    value *= min(1.0, evidence / full) ** EVIDENCE_POWER
    return round(min(1.0, value), 3)


def _off_topic(claim_tokens: Sequence[_Token], report_tokens: Sequence[_Token]) -> bool:
    """True when the report shares only places and generic words with the claim: "where is the demonstration
    area?" against "the demonstration area is a kettle"."""
    topics = [t for t in claim_tokens if t.weight == 1.0]
    return bool(topics) and not any(_similarity(c.text, r.text) > 0 for c in topics for r in report_tokens)


def _elsewhere(claim_tokens: Sequence[_Token], report_tokens: Sequence[_Token]) -> bool:
    """True when the report names a place and shares none of the claim's: the same thing, somewhere else."""
    claim_places = [t for t in claim_tokens if t.place]
    report_places = [t for t in report_tokens if t.place]
    if not claim_places or not report_places:
        return False
    return not any(_similarity(c.text, r.text) > 0 for c in claim_places for r in report_tokens)


@lru_cache(maxsize=64)
def _distinctive(claims: tuple[str, ...]) -> dict[str, frozenset[str]]:
    """For each claim, its topic words (weight 1) that no other claim of the set has. Linear in the set's size,
    and cached: an event's rumours change far less often than reports arrive."""
    per_claim = {claim: {t.text for t in _tokens(claim, True) if t.weight == 1.0} for claim in claims}
    counts: dict[str, int] = {}
    for words in per_claim.values():
        for word in words:
            counts[word] = counts.get(word, 0) + 1
    return {claim: frozenset(w for w in words if counts[w] == 1) for claim, words in per_claim.items()}


@lru_cache(maxsize=64)
def _vocabulary(claims: tuple[str, ...]) -> dict[str, frozenset[str]]:
    """The claims' topic words and places, each with the claims that have it. Generic words ("police", "crowd")
    are left out: a report sharing only those with a claim is off topic and scores below any threshold."""
    holders: dict[str, set[str]] = {}
    for claim in claims:
        for token in _tokens(claim, True):
            if token.weight > GENERIC_WEIGHT:
                holders.setdefault(token.text, set()).add(claim)
    return {word: frozenset(found) for word, found in holders.items()}


class Matcher:
    """Ranks the known rumours that a report repeats. Rumours are dicts with at least `id` and `claim`."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError("threshold must be within [0, 1]")
        self.threshold = threshold

    def matches(self, text: str, rumours: Iterable[Mapping[str, Any]], limit: int = 3) -> list[dict[str, Any]]:
        """The rumours the report repeats, best first. Scored against the event's rumours together: a topic word
        that only one of them has ("measles", "stabbed") says more than one they share, so covering it adds
        `UNIQUE_BONUS` to that rumour's score. Only the rumours that share a word with the report are scored (an
        index of the rumours' words finds them), so 500 known rumours cost about what the few related ones do."""
        candidates = [(str(r["id"]), r["claim"]) for r in rumours]
        claims = tuple(claim for _, claim in candidates)
        distinctive = _distinctive(claims)
        words = _vocabulary(claims)
        report_tokens = _tokens(text.lower(), False)
        related: set[str] = set()
        for token in report_tokens:
            for word, holders in words.items():
                if _similarity(token.text, word) > 0:
                    related |= holders
        scored = []
        for rumour_id, claim in candidates:
            if claim not in related:
                continue
            value = score(text, claim)
            if value <= 0:
                continue
            bonus = max((_similarity(word, t.text) for word in distinctive.get(claim, ()) for t in report_tokens),
                        default=0.0)
            scored.append((round(min(1.0, value + UNIQUE_BONUS * bonus), 3), rumour_id))
        kept = sorted(((s, rid) for s, rid in scored if s >= self.threshold), key=lambda p: (-p[0], p[1]))
        return [{"rumour_id": rid, "score": s} for s, rid in kept[: max(0, limit)]]

    def match_all(self, texts: Sequence[str], rumours: Sequence[Mapping[str, Any]]) -> list[list[dict[str, Any]]]:
        """`matches` for each text: a plain function of strings, so it can run on a thread off the event loop."""
        return [self.matches(text, rumours) for text in texts]

    def is_match(self, text: str, claim: str) -> bool:
        value = score(text, claim)
        return value > 0 and value >= self.threshold


def evaluate(pairs: Iterable[Mapping[str, Any]], matcher: Matcher) -> dict[str, Any]:
    """Precision and recall of `matcher` over labelled `{"report", "claim", "match"}` pairs."""
    tp = fp = fn = tn = 0
    for pair in pairs:
        predicted = matcher.is_match(pair["report"], pair["claim"])
        if predicted and pair["match"]:
            tp += 1
        elif predicted:
            fp += 1
        elif pair["match"]:
            fn += 1
        else:
            tn += 1
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return {"precision": round(precision, 3), "recall": round(recall, 3), "tp": tp, "fp": fp, "fn": fn, "tn": tn}
