"""Match a report from the public against the known rumours of its event.

A report repeats a rumour when it carries the rumour's *distinctive* words: "flares" for "Protesters are planning
to set off flares on Fargate", not just "Fargate". The score is a weighted F-measure (`BETA`, now 1: covering the
claim and not adding chatter count alike) of word overlap between report and claim, after normalising both so that
case, punctuation, word order, plurals, small typos, common slang and filler do not matter. Weights say how much
a shared word tells about a shared claim:

- filler ("heard", "they'll", "later") is dropped;
- words nearly every rumour at a policed event contains ("police", "protesters", "crowd") count 0.3;
- places count 0.5, because many unrelated reports mention the same street. A word is taken for a place when it
  follows "on", "at", "outside"..., ends or precedes a place noun ("Devonshire *Green*", "demonstration *area*"),
  or, in the claim only, is capitalised mid-sentence (an officer's capitals mean something, a phone's do not);
- everything else counts 1.

Words are compared after a public-order thesaurus and phrase list have reduced both sides to ideas ("marksmen",
"guys with rifles" -> sniper; "boxed in", "won't let anyone out", "all the exits are blocked" -> kettle). Two ideas
that people use for one another (a fight and an attack, a burst dam and a wall that gave way) score 0.7. Misspelt
words find their thesaurus entry by sound ("snipper", "foto") or by one typing slip from exactly one entry
("marksmin", "detianed": a letter missing, added or swapped, or one vowel for another; a consonant for another is
mostly a different word, "planned" is not "planted"); words the thesaurus does not know still match a claim's
word at one or two edits, or by a shared beginning.

Three rules then catch what overlap cannot: a report sharing none of the claim's topic words (weight 1) shares at
most a place (x0.5); a report naming a place and none of the claim's is about somewhere else (x0.5) - a named
place ("Fargate", the "Peace" of the Peace Gardens), not a bare "the ground" or "the square", which is wherever
the speaker is; and a report that negates where the claim does not, or the reverse ("no toilets at the Arena"
against "the Arena toilets are past the bar"), says something else (x0.6). A kettle counts as a negation ("nobody
will be let out"), since the phrases fold the negation into it.

`score` is the plain definition, word against word. `Matcher` gives the same results through an index of the
event's claims, analysed once, and scores only the rumours a report's words can reach.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter
from typing import Any

from rapidfuzz import process
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
RELATED_CREDIT = 0.7
UNIQUE_BONUS = 0.1
EVIDENCE_FULL = 2.0
EVIDENCE_POWER = 1.0
_NEGATIVE = frozenset({"halt", "neg"})
# What says "no" for the polarity rule: the negative ideas, and a kettle, which is "nobody let out" said in one word
# (the phrases take the negation into it).
_POLARITY = _NEGATIVE | {"kettle"}

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
    theyve weve youve whos whats wheres hows heres theyd youd wed hed shed id went goes till until tomorrow
    yesterday again already yet ages behind along opposite onto beside across towards toward between round
    massive huge big mass loads lots load bunch tons proper literally totally absolutely whole entire
    """.split()
)

# Who is held in or let out: "us", "everyone", "the away fans", "the whole crowd".
_WHO = (r"(?:(?:us|them|you|everyone|everybody|anyone|anybody|people|nobody|no one|fans|supporters|"
        r"(?:the |all the |all )(?:\w+ )?(?:fans|supporters|crowd|end|lot|marchers|protesters|people|kids))\s)?")

# Multi-word slang and paraphrase first, so that its words do not also count one by one ("old bill" is not about
# bills, "on top of the buildings" is a roof). Each names one idea of the public-order thesaurus below.
_PHRASES: tuple[tuple[str, str], ...] = (
    (r"\bold bill\b", "police"),
    (r"\b(?:tear|cs|pepper) ?(?:gas(?:s?ed|s?ing)?|spray(?:ed|ing)?)\b", "teargas"),
    (r"\bteargass?(?:ed|ing)\b", "teargas"),
    (r"\beyes (?:are |were )?(?:burning|stinging|streaming)\b", "teargas"),
    (r"\b(?:gas|gassed|gassing|gasses)\b", "teargas"),
    (r"\b(?:call(?:ed|ing)?|is|are|was|were|be|been|turned|switched|cut|cutting) off\b", "halt"),
    (r"\b(electricity|power|lights|gas|water|trams?|trains?|buses|signal|internet) off\b", r"\1 halt"),
    (r"\b(show|gig|concert|game|match|march|festival|derby|race|parade)s off\b", r"\1 halt"),
    (r"\b(?:pull(?:ed|ing|s)?|drop(?:ped|ping|s)?) out\b", "halt"),
    (r"\b(tram|bus)s? stops?\b", r"\1stop"),
    (r"\btrain station\b", "station"),
    (r"\b(?:kick(?:ed|ing|s)?|kicks) off\b", "fight"),
    (r"\bpunch ?ups?\b", "fight"),
    (r"\b(?:set|let|setting|letting|sets|lets) off\b", "ignite"),
    (r"\bsmoke ?bombs?\b", "flare"),
    # "Not letting anyone out", "nobody can leave", "can't get out": the negation is part of the idea (a kettle),
    # so it is taken with it rather than left to count as a contradiction.
    (r"\b(?:not|wont|arent|isnt|never|dont|didnt|cant|cannot|wouldnt|refusing to|refuse to) (?:be )?"
     r"(?:let(?:ting)?|lets|allow(?:ing)?) " + _WHO + r"(?:out|leave|go)\b", "kettle"),
    (r"\b(?:nobody|no one|noone|none of us|no body) (?:will be |is being |is |are |gets |can |cant |allowed to )?"
     r"(?:let out|leave|leaving|get out|getting out|go home)\b", "kettle"),
    (r"\b(?:cant|cannot|can not|couldnt|unable to|not able to) (?:get out|get away|get home|go home|leave|escape)\b",
     "kettle"),
    (r"\bno way (?:out|to get out|home)\b", "kettle"),
    # Blocked exits are a kettle, and still about exits, for a claim that says only that.
    (r"\b(?:all )?(?:the )?(?:exits?|ways? out) (?:are |is |have been |been |all )?(?:blocked|closed|shut)\b",
     "kettle exit"),
    (r"\b(?:block(?:ed|ing)?|clos(?:ed|ing)|shut(?:ting)?) (?:off )?(?:all )?(?:the )?(?:exits?|ways? out)\b",
     "kettle exit"),
    (r"\b(?:penned|boxed|hemmed|locked|held|kept|keeping|keep|holding|hold|stuck|shut|trapped|trapping|trap) "
     + _WHO + r"(?:in|inside)\b", "kettle"),
    (r"\b(?:held|holding|hold|kept|keeping|keep) (?:us |them |everyone |people |fans |the \w+ |\w+ )?back\b", "kettle"),
    (r"\b(?:let|letting|lets) " + _WHO + r"(?:out|leave)\b", "kettle"),
    (r"\b(?:let|letting|lets|allowed|allow) (?:us |you |them |anyone |anybody |people )?back (?:in|inside)\b", "reentry"),
    (r"\bre ?entry\b", "reentry"),
    (r"\bprotest pen\b", "kettle"),
    (r"\bwater ?can+ons?(?: trucks?| lorry| lorries| vans?| vehicles?)?\b", "watercannon"),
    (r"\bfacial recognition\b", "photograph"),
    (r"\bface ?(?:scan(?:ner|ning|s)?|recognition|id)\b", "photograph"),
    (r"\b(?:record(?:ing|ed|s)?|scan(?:ning|ned|s)?|film(?:ing|ed|s)?|snap(?:ping|ped|s)?) (?:\w+ )?faces?\b",
     "photograph"),
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
    (r"\bafter (?:the )?(?:game|match)\b", "finalwhistle"),
    (r"\baway (?:end|section|stand|support|supporters|lot|fans|following)\b", "away fan"),
    (r"\b(?:season )?ticket ?holders?\b", "fan ticket"),
    (r"\b(?:dam|reservoir) walls?\b", "dam"),
    (r"\bboil (?:your |the )?water(?: notice| warning| order)?\b", "tapwater contaminate"),
    (r"\b(?:not|dont|do not|cant|cannot|shouldnt|should not|must not|mustnt|unsafe to|not safe to) (?:be )?"
     r"(?:drink|drunk|drinking)\b", "contaminate"),
    (r"\bon (?:their|his|her|its|our|the) way\b", "come"),
    (r"\b(?:cant|cannot|can not|no|not) (?:\w+ )?(?:drive|driving|cars?|traffic)\b", "halt road"),
    (r"\b(?:moving|moved|move) (?:everyone|people|residents|us) out\b", "evacuate"),
    (r"\bleave their homes\b", "evacuate"),
    (r"\bexplosive device\b", "bomb"),
    (r"\bsuspicious (?:package|packages|bag|bags|item|items|device|parcel)\b", "bomb"),
    (r"\b(?:passed away|lost (?:his|her|their) li(?:fe|ves))\b", "die"),
    (r"\b(?:lights out|no lights)\b", "power halt"),
    (r"\b(?:carted|dragged|bundled) (?:off|away)(?: in(?:to)? (?:a |the )?(?:van|meat wagon))?\b", "arrest"),
    (r"\b(?:everyone|everybody|people|all) out of\b", "evacuate"),
    (r"\bset (?:the )?dogs on\b", "dog attack"),
    # "The band comes on late", "main act coming on at ten": on stage, that is starting. (Not "going on", which
    # mostly asks what is happening.)
    (r"\b(?:coming|come|comes) on(?: stage)?(?= (?:really |very |so |well )?"
     r"(?:late|early|at|till|until|soon|now|after|before)\b|\W*$)", "start"),
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
    "horse": ("mounted", "cavalry", "horseback", "mounties"),
    # UK police incapacitant sprays go by their names: CS, PAVA, capsicum; "mace" is the crowd's word.
    "teargas": ("mace", "pava", "capsicum"),
    "charge": ("charging", "charged", "trample", "trampling", "trampled", "rode", "ride"),
    "flare": ("flair", "pyro", "pyrotechnic", "pyros"),
    "fight": ("brawl", "fighting", "rumble", "fought", "scuffle", "ruck", "trouble", "clash", "clashes", "violence",
              "brawling", "aggro", "ruckus", "melee", "riot", "rioting", "rioters"),
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
    "come": ("coming", "comes", "came", "heading", "headed", "arriving", "arrive", "arrived"),
    "people": ("lads", "guys", "blokes", "men", "folk", "folks", "workers", "staff", "persons", "mates", "friends",
               "pals"),
    "database": ("file", "files", "record", "register", "list", "logging", "log", "logged", "profile"),
    "photograph": ("photo", "photographing", "filming", "film", "picture", "pic", "snap", "snapping", "camera",
                   "recording", "cctv"),
    "arrest": ("nick", "nicked", "nicking", "detain", "detained", "detaining", "lift", "lifted", "lifting",
               "cuffed", "arrested", "collared", "handcuffed", "handcuffs"),
    "student": ("uni", "university", "undergrad", "union"),
    "edl": ("fascist", "fascists", "nazi", "nazis"),
    "attack": ("smash", "attacking", "assault", "ambush"),
    "die": ("dead", "died", "killed", "death", "dying", "fatal", "dies"),
    "hit": ("struck", "knocked"),
    "van": ("vehicle", "carrier", "truck", "lorry"),
    "stab": ("stabbing", "stabbed", "knifed", "knife", "knifing", "knives", "shanked", "shanking"),
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
    "entrance": ("gate", "gates", "door", "doors", "turnstile", "turnstiles", "entry", "way in", "security"),
    "refuse": ("refused", "rejected", "rejecting", "refusing", "barred"),
    "ticket": ("tickets", "eticket", "etickets"),
    "tram": ("trams",),
    "match": ("game", "derby", "fixture"),
    # concerts
    "concert": ("show", "gig"),
    "ill": ("sick", "poorly", "unwell", "hospital", "illness"),
    "headliner": ("star", "singer"),
    "crush": ("crushed", "crushing", "squeeze", "squeezed", "crowding", "overcrowded", "stampede"),
    "fake": ("counterfeit", "forged", "forgery", "fraudulent", "dodgy", "fakes", "bogus", "knockoff", "scam",
             "scammed", "scams"),
    "bag": ("bags", "backpack", "backpacks", "handbag", "handbags", "rucksack", "rucksacks"),
    "confiscate": ("confiscated", "confiscating", "seized", "seize", "bin", "binned"),
    "toilet": ("loo", "loos", "toilets", "bathroom", "bathrooms", "lavatory", "wc", "portaloo", "portaloos", "bogs"),
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
    "evacuate": ("evacuating", "evacuation", "evacuated", "clearing", "cleared", "evac"),
    "contaminate": ("contaminated", "poisoned", "poison", "dirty", "sewage", "unsafe", "polluted", "undrinkable"),
    "loot": ("looting", "looters", "looted", "robbing", "robbed", "thieves", "thief", "stealing", "burgle"),
    "power": ("electricity", "electric", "blackout", "outage"),
    "flood": ("flooded", "flooding", "floods", "pouring"),
    "bomb": ("explosion", "explosive", "terror", "terrorist", "blast", "bombing", "exploded", "planted"),
    "toxic": ("poisonous", "chemicals", "chemical", "fumes", "asbestos", "hazardous"),
    "arson": ("torched", "torch", "burnt", "deliberately", "deliberate", "arsonist"),
    "storm": ("lightning", "weather", "thunder", "wind", "gale"),
    "spike": ("spiked", "spiking", "drugged", "roofied"),
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

# Generic words that are places when used as one ("in the area", "across the city").
_GENERIC_PLACES = frozenset("area city site route".split())

# The word after one of these is usually where something happens ("at the station", "on Fargate").
_LOCATIVE = frozenset("on at in outside near by into onto from along behind opposite inside".split())

# Nouns that end place names; the word before one is part of the name ("Devonshire Green", "demonstration area").
_PLACE_HEADS = frozenset(
    """
    area zone street road lane square park garden green hall center centre pool market station
    avenue row bridge arena ground stadium library church cathedral hospital school university pub shop bar
    cafe museum theatre hotel end stand terrace kop store
    """.split()
)

# A place noun alone names no place: "near the ground", "in the square" are wherever the speaker is.
_VAGUE_PLACES = frozenset(
    """
    ground stadium venue arena site area zone town city center building shop store pub bar cafe street road lane
    square park place hotel theatre end stand terrace
    """.split())

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
    # "occupation" and "occupying", "evacuation" and "evacuated" meet at "occup", "evacu" by prefix.
    if word.endswith("ation") and len(word) - 5 >= 4:
        return word[:-5]
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
    # Then the stems of the variants, where they are not words of their own: "recording" is a photograph, but
    # its stem "record" is the database's word, and "crowding" (a crush) must not make every "crowd" one.
    for head, variants in _SYNONYMS.items():
        for variant in (head, *variants):
            stem = _stem(variant)
            if stem not in _GENERIC:
                canon.setdefault(stem, head)
    return canon


_CANON = _build_canon()


def _sound(word: str) -> str:
    """How a word sounds, roughly, so that slips that keep the sound meet the thesaurus word: doubled letters
    once ("snipper" is "sniper"), ph as f ("foto" is "photo"), ck and a hard c as k ("niked" is "nicked", "kops"
    is "cops"), z as s."""
    word = word.replace("ph", "f").replace("ck", "k").replace("z", "s")
    word = re.sub(r"c(?=[aou]|$)", "k", word)
    return re.sub(r"(.)\1+", r"\1", word)


def _build_sounds() -> dict[str, str]:
    """The thesaurus by sound, keeping only sounds that name one idea."""
    heads: dict[str, set[str]] = {}
    for variant, head in _CANON.items():
        if len(variant) >= 4:
            heads.setdefault(_sound(variant), set()).add(head)
    return {sound: next(iter(found)) for sound, found in heads.items() if len(found) == 1}


_SOUNDS = _build_sounds()
# The thesaurus words long enough for one slip to leave them recognisable ("marksmin", "detianed", "trampeld").
_SPELT = sorted(w for w in _CANON if len(w) >= 6 and " " not in w)


def _slip(typed: str, meant: str) -> bool:
    """Whether one edit between two words is a typing slip rather than another word: a letter missing or added,
    two letters swapped ("detianed"), or one vowel for another ("marksmin"). A consonant for another mostly
    makes a different word ("planned" is not "planted")."""
    if len(typed) != len(meant):
        return True
    differ = [i for i, (a, b) in enumerate(zip(typed, meant, strict=True)) if a != b]
    if len(differ) == 2:
        return True  # OSA distance 1 with two differences: a swap
    return len(differ) == 1 and typed[differ[0]] in "aeiouy" and meant[differ[0]] in "aeiouy"


@lru_cache(maxsize=65536)
def _canonical(word: str) -> str:
    if word in _CANON:
        return _CANON[word]
    stem = _stem(word)
    if stem in _CANON:
        return _CANON[stem]
    if len(word) >= 4:
        sound = _SOUNDS.get(_sound(word)) or _SOUNDS.get(_sound(stem))
        if sound is not None:
            return sound
    for form in (word, stem):
        if len(form) < 6:
            break
        # One slip from exactly one idea of the thesaurus. Not the common verbs of "halt" and "neg", and not a
        # different last letter: "closer" is not "closed", "lifter" not "lifted".
        near = {_CANON[hit] for hit, _, _ in process.extract(form, _SPELT, scorer=OSA.distance, score_cutoff=1,
                                                             limit=None) if hit[:-1] != form[:-1] and _slip(form, hit)}
        if len(near) == 1 and not near & _NEGATIVE:
            return near.pop()
    return stem


@dataclass(frozen=True)
class _Token:
    text: str
    weight: float
    place: bool
    tenths: int  # the weight in tenths: sums of these are exact, whatever order they are added in


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
        # People and generic words are no place ("blocked by police", "at the start"), except the generic places.
        place = (word not in _GENERIC or word in _GENERIC_PLACES) and (word in names or _is_place(words, i, word))
        weight = GENERIC_WEIGHT if word in _GENERIC else PLACE_WEIGHT if place else 1.0
        if word in found:
            weight = min(weight, found[word].weight)
            place = place or found[word].place
        found[word] = _Token(word, weight, place, round(weight * 10))
    return tuple(found.values())


# Ideas that are not the same but that people use for one another: a fight and an attack, a dam that bursts and
# one whose wall gives way, a burning shop and a burning building.
_RELATED_PAIRS: tuple[tuple[str, str], ...] = (
    ("fight", "attack"), ("burst", "collapse"), ("building", "shop"), ("building", "store"),
)
_RELATED: dict[str, frozenset[str]] = {}
for _a, _b in _RELATED_PAIRS:
    _RELATED[_a] = _RELATED.get(_a, frozenset()) | {_b}
    _RELATED[_b] = _RELATED.get(_b, frozenset()) | {_a}


# Word pairs repeat across reports and rumours of one event; edit distance is the cost worth caching.
@lru_cache(maxsize=65536)
def _similarity(a: str, b: str) -> float:
    if a == b:
        return 1.0
    if a in _NEGATIVE and b in _NEGATIVE:
        return NEG_CREDIT
    if b in _RELATED.get(a, ()):
        return RELATED_CREDIT
    short, long_ = sorted((a, b), key=len)
    if len(short) >= 4 and long_.startswith(short) and len(long_) - len(short) <= 3:
        return PREFIX_CREDIT
    if len(short) >= 5:
        # One slip for words of five to seven letters, two beyond: "snipres", "manchestr", "fargte".
        allowed = 1 if len(long_) <= 7 else 2
        if OSA.distance(a, b, score_cutoff=allowed) <= allowed:
            return FUZZY_CREDIT
    return 0.0


def _tenths(a: str, b: str) -> int:
    """`_similarity` in tenths (every credit is a whole number of tenths)."""
    return round(_similarity(a, b) * 10)


def _covered(side: Sequence[_Token], other: Sequence[_Token]) -> tuple[int, int]:
    """(the weight of `side` that `other` covers, in hundredths; `side`'s whole weight, in tenths). Whole numbers,
    so that the indexed matcher, which adds the same terms in another order, gets exactly the same."""
    total = covered = 0
    for token in side:
        total += token.tenths
        best = 0
        for candidate in other:
            best = max(best, _tenths(token.text, candidate.text))
            if best == 10:
                break
        covered += token.tenths * best
    return covered, total


@dataclass(frozen=True)
class _Claim:
    """A claim analysed once, when it is first seen (its text is the key: a changed claim is a new one)."""

    text: str
    tokens: tuple[_Token, ...]
    by_text: Mapping[str, _Token]
    tenths: tuple[tuple[str, int], ...]  # (word, weight in tenths)
    total: int  # tenths
    full: int  # the covered weight that counts as full evidence, in tenths
    places: tuple[str, ...]
    topics: tuple[str, ...]
    negative: bool


@lru_cache(maxsize=8192)
def _claim(claim: str) -> _Claim:
    tokens = _tokens(claim, True)
    return _Claim(
        text=claim,
        tokens=tokens,
        by_text={t.text: t for t in tokens},
        tenths=tuple((t.text, t.tenths) for t in tokens),
        total=sum(t.tenths for t in tokens),
        # A short claim cannot offer more evidence than it holds ("The march has been banned").
        full=min(round(EVIDENCE_FULL * 10), sum(t.tenths for t in tokens)),
        places=tuple(t.text for t in _claim_places(tokens)),
        topics=tuple(t.text for t in tokens if t.weight == 1.0),
        negative=any(t.text in _POLARITY for t in tokens),
    )


@dataclass(frozen=True)
class _Report:
    tokens: tuple[_Token, ...]
    negative: bool
    asks: bool
    position: Mapping[str, int]  # word -> its place in `tokens` (each word is there once)
    total: int  # the words' own weight, in tenths
    named: int  # how many of the words are named places, as the report has them


def _report(text: str) -> _Report:
    # A report's own capitalisation is random on a phone, so it is ignored; a word the claim marks as a place is a
    # place on both sides (see `_as_seen_by`).
    tokens = _tokens(text.lower(), False)
    return _Report(tokens, any(t.text in _POLARITY for t in tokens), _INFO_REQUEST.match(text) is not None,
                   {t.text: i for i, t in enumerate(tokens)}, sum(t.tenths for t in tokens),
                   sum(_named(t) for t in tokens))


def _as_seen_by(claim: _Claim, report: _Report) -> tuple[_Token, ...]:
    return tuple(claim.by_text.get(t.text, t) for t in report.tokens)


def _combine(claim: _Claim, report: _Report, evidence: int, precision_covered: int, precision_total: int,
             elsewhere: bool, off_topic: bool) -> float:
    """The score from its parts; the one formula both the plain `score` and the indexed `Matcher` use.
    `evidence` is the claim's weight the report covers and `precision_covered` the report's weight the claim
    covers (hundredths), `precision_total` the report's weight as the claim sees it (tenths)."""
    if not evidence or not precision_covered:
        return 0.0
    recall = evidence / (10 * claim.total)
    precision = precision_covered / (10 * precision_total)
    beta2 = BETA * BETA
    value = (1 + beta2) * precision * recall / (beta2 * precision + recall)
    if elsewhere:
        value *= ELSEWHERE_FACTOR
    if off_topic:
        value *= OFF_TOPIC_FACTOR
    # "No toilets at the Arena" and "the Arena toilets are past the bar" share every noun and mean the opposite.
    if claim.negative != report.negative:
        value *= POLARITY_FACTOR
    if report.asks:
        value *= INFO_FACTOR
    # One shared idea is thin evidence however short the report: "my cat is missing since the flood" shares all
    # it says of "Meadowhall is flooded". A topic word and a place, or two topic words, are enough.
    value *= min(1.0, evidence / (10 * claim.full)) ** EVIDENCE_POWER
    return round(min(1.0, value), 3)


# Officers re-read the same reports against the same rumours; the answer never changes.
@lru_cache(maxsize=65536)
def score(report_text: str, claim: str) -> float:
    """How strongly a report repeats a claim, from 0 (unrelated) to 1 (the same words), rounded to 3 decimals.
    The plain definition, word against word; `Matcher` computes the same value through an index."""
    analysed, report = _claim(claim), _report(report_text)
    report_tokens = _as_seen_by(analysed, report)
    if not analysed.tokens or not report_tokens:
        return 0.0
    evidence, _ = _covered(analysed.tokens, report_tokens)
    precision_covered, precision_total = _covered(report_tokens, analysed.tokens)
    return _combine(analysed, report, evidence, precision_covered, precision_total,
                    _elsewhere(analysed.tokens, report_tokens), _off_topic(analysed.tokens, report_tokens))


def _off_topic(claim_tokens: Sequence[_Token], report_tokens: Sequence[_Token]) -> bool:
    """True when the report shares only places and generic words with the claim: "where is the demonstration
    area?" against "the demonstration area is a kettle"."""
    topics = [t for t in claim_tokens if t.weight == 1.0]
    return bool(topics) and not any(_similarity(c.text, r.text) > 0 for c in topics for r in report_tokens)


def _named(token: _Token) -> bool:
    """A place with a name ("Fargate", "Division", "Winter"), not a bare "the ground" or "the square", which may be
    anywhere the speaker is (the stadium of the match, the square the march is in)."""
    return token.place and token.text not in _VAGUE_PLACES


def _claim_places(claim_tokens: Sequence[_Token]) -> list[_Token]:
    """The places a claim names, by their names where it has them: "Peace" of the Peace Gardens, which the
    Winter Garden does not share; "station" when that is all it says."""
    named = [t for t in claim_tokens if _named(t)]
    return [t for t in named if t.text not in _PLACE_HEADS] or named


def _elsewhere(claim_tokens: Sequence[_Token], report_tokens: Sequence[_Token]) -> bool:
    """True when the report names a place and shares none of the claim's: the same thing, somewhere else."""
    claim_places = _claim_places(claim_tokens)
    report_places = [t for t in report_tokens if _named(t)]
    if not claim_places or not report_places:
        return False
    return not any(_similarity(c.text, r.text) > 0 for c in claim_places for r in report_tokens)


def _distinctive(claims: Sequence[_Claim]) -> dict[str, frozenset[str]]:
    """For each claim, its topic words (weight 1) that no other claim of the set has."""
    per_claim = {claim.text: set(claim.topics) for claim in claims}
    counts: dict[str, int] = {}
    for words in per_claim.values():
        for word in words:
            counts[word] = counts.get(word, 0) + 1
    return {claim: frozenset(w for w in words if counts[w] == 1) for claim, words in per_claim.items()}


class _Index:
    """An event's claims, analysed and indexed once for every report scored against them until one changes.

    `similar(word)` finds every word of the claims that `_similarity` gives a non-zero score against `word`
    without trying them all: the same word, the other negations, words that extend it or that it extends by up to
    three letters (a table of prefixes), and words within two edits (rapidfuzz over the words of five letters or
    more, in C). `_similarity` then gives each found word its exact score."""

    def __init__(self, claims: tuple[str, ...]) -> None:
        self.claims = {text: _claim(text) for text in claims}
        self.distinctive = _distinctive(list(self.claims.values()))
        # Topic words and places, each with the claims that have it. Generic words ("police", "crowd") are left
        # out: a report sharing only those with a claim is off topic and scores below any threshold.
        # Held as positions in `claims`, so that a report costs only what its related rumours do.
        holders: dict[str, set[int]] = {}
        # Every word with the claims that have it and its weight there (tenths), and the claims for which it is
        # distinctive: a report's words add up each claim's covered weight and bonus without visiting the claim.
        postings: dict[str, list[tuple[int, int]]] = {}
        distinct: dict[str, list[int]] = {}
        words: set[str] = set()
        for position, text in enumerate(claims):
            for token in self.claims[text].tokens:
                words.add(token.text)
                postings.setdefault(token.text, []).append((position, token.tenths))
                if token.weight > GENERIC_WEIGHT:
                    holders.setdefault(token.text, set()).add(position)
            for word in self.distinctive[text]:
                distinct.setdefault(word, []).append(position)
        self.holders = {word: frozenset(found) for word, found in holders.items()}
        self.postings = postings
        self.distinct = distinct
        self.words = frozenset(words)
        self.negatives = frozenset(words & _NEGATIVE)
        self.long_words = sorted(w for w in words if len(w) >= 5)
        longer_forms: dict[str, list[str]] = {}
        for word in sorted(words):
            for k in range(max(4, len(word) - 3), len(word)):
                longer_forms.setdefault(word[:k], []).append(word)
        self.longer_forms = longer_forms

    def similar(self, word: str) -> dict[str, int]:
        found: set[str] = set()
        if word in self.words:
            found.add(word)
        if word in _NEGATIVE:
            found |= self.negatives
        found |= _RELATED.get(word, frozenset()) & self.words
        if len(word) >= 4:
            found.update(self.longer_forms.get(word, ()))
            found.update(word[:k] for k in range(max(4, len(word) - 3), len(word)) if word[:k] in self.words)
        if len(word) >= 5 and self.long_words:
            found.update(hit for hit, _, _ in process.extract(word, self.long_words, scorer=OSA.distance,
                                                              score_cutoff=2, limit=None))
        return {hit: value for hit in found if (value := _tenths(word, hit)) > 0}


@lru_cache(maxsize=64)
def _index(claims: tuple[str, ...]) -> _Index:
    return _Index(claims)


def _upper_bound(claim: _Claim, report: _Report, evidence: int, topical: bool) -> float:
    """A bound `score(report, claim)` cannot exceed, from the claim's side alone: the precision it would reach if
    every report word were in the claim. Most rumours an index look-up finds share only a place with the report
    ("fargate" is in every rumour about Fargate), and this sets them aside without the report-side sums."""
    if not evidence:
        return 0.0
    recall = evidence / (10 * claim.total)
    beta2 = BETA * BETA
    value = (1 + beta2) * recall / (beta2 + recall)
    if claim.topics and not topical:
        value *= OFF_TOPIC_FACTOR
    if claim.negative != report.negative:
        value *= POLARITY_FACTOR
    if report.asks:
        value *= INFO_FACTOR
    return value * min(1.0, evidence / (10 * claim.full)) ** EVIDENCE_POWER


def _indexed_score(claim: _Claim, report: _Report, best: Mapping[str, int],
                   hits: Mapping[str, Sequence[tuple[int, int]]], evidence: int) -> float:
    """`score(report, claim)`, from the report's words already looked up in the index: `best[word]` is the best
    similarity (tenths) of a claim word to any report word, `hits[word]` the report words (by position) similar to
    it. It costs what the claim's words and their hits do, not the report's length: the report's weight as the
    claim sees it is its own total, corrected for the words the claim has (which take the claim's weight and
    place). The sums are whole numbers, so they equal `score`'s exactly."""
    if not claim.tokens or not report.tokens:
        return 0.0
    covering: dict[int, int] = {}
    for text, _ in claim.tenths:
        for position, value in hits.get(text, ()):
            if value > covering.get(position, 0):
                covering[position] = value
    by_text = claim.by_text
    tokens = report.tokens
    precision_covered = 0
    for position, value in covering.items():
        precision_covered += by_text.get(tokens[position].text, tokens[position]).tenths * value
    precision_total, named = report.total, report.named
    for token in claim.tokens:
        shared = report.position.get(token.text)
        if shared is not None:
            precision_total += token.tenths - tokens[shared].tenths
            named += _named(token) - _named(tokens[shared])
    elsewhere = bool(claim.places) and named > 0 and not any(best.get(word, 0) > 0 for word in claim.places)
    off_topic = bool(claim.topics) and not any(best.get(word, 0) > 0 for word in claim.topics)
    return _combine(claim, report, evidence, precision_covered, precision_total, elsewhere, off_topic)


_ID_AND_CLAIM = itemgetter("id", "claim")
_CLAIM = itemgetter(1)


class Matcher:
    """Ranks the known rumours that a report repeats. Rumours are dicts with at least `id` and `claim`."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError("threshold must be within [0, 1]")
        self.threshold = threshold

    def matches(self, text: str, rumours: Iterable[Mapping[str, Any]], limit: int = 3) -> list[dict[str, Any]]:
        """The rumours the report repeats, best first. Scored against the event's rumours together: a topic word
        that only one of them has ("measles", "stabbed") says more than one they share, so covering it adds
        `UNIQUE_BONUS` to that rumour's score.

        The claims are analysed and indexed once (`_Index`, cached by the tuple of claims); the report is
        analysed once, its words looked up in the index, and only the rumours holding a topic word or place
        that a report word resembles are scored, each by dictionary look-ups (`_indexed_score`). The result is
        the same as scoring every rumour with `score` (tests/rumours/test_matching.py checks it on the whole
        labelled set)."""
        candidates = list(map(_ID_AND_CLAIM, rumours))
        index = _index(tuple(map(_CLAIM, candidates)))
        report = _report(text)
        best: dict[str, int] = {}
        hits: dict[str, list[tuple[int, int]]] = {}
        for position, token in enumerate(report.tokens):
            for word, credit in index.similar(token.text).items():
                hits.setdefault(word, []).append((position, credit))
                if credit > best.get(word, 0):
                    best[word] = credit
        related: set[int] = set()
        evidences: dict[int, int] = {}  # position -> the claim's covered weight, hundredths (`_covered`'s first)
        topical: set[int] = set()  # positions whose claim has a topic word the report covers
        bonuses: dict[int, int] = {}  # position -> best credit of a word distinctive to its claim, tenths
        for word, credit in best.items():
            related |= index.holders.get(word, frozenset())
            for position, tenths in index.postings.get(word, ()):
                evidences[position] = evidences.get(position, 0) + tenths * credit
                if tenths == 10:
                    topical.add(position)
            for position in index.distinct.get(word, ()):
                if credit > bonuses.get(position, 0):
                    bonuses[position] = credit
        scored = []
        for position in related:
            rumour_id, claim = candidates[position]
            analysed = index.claims[claim]
            bonus = bonuses.get(position, 0) / 10
            evidence = evidences.get(position, 0)
            # Rounding to 3 decimals can lift a value by 0.0005 at most: a bound 0.001 under the threshold is safe.
            if _upper_bound(analysed, report, evidence, position in topical) + UNIQUE_BONUS * bonus \
                    < self.threshold - 0.001:
                continue
            value = _indexed_score(analysed, report, best, hits, evidence)
            if value <= 0:
                continue
            scored.append((round(min(1.0, value + UNIQUE_BONUS * bonus), 3), str(rumour_id)))
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
