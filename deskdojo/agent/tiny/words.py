"""Whole-word tokens of the tiny tokenizer: made-up words (the pretraining's element
names), common interface words, small numbers (element ids) and, given by the caller,
the task families' word pools.

A name that is one token can be matched by one attention step (instruction word to
table row); split into byte pieces it needs a chain of them, which a model this small
learns only after a long plateau. The family words are given by ``deskdojo tiny
tokenizer`` (the agent may not import the curriculum); their embeddings are never
trained by pretraining, which sees only the made-up words.
"""

from __future__ import annotations

import random

PSEUDO_WORD_COUNT = 4000
"""Made-up words for pretraining names (half as capitalised forms)."""

UI_WORDS = tuple("""
OK Cancel Apply Save Open Close Yes No Continue Submit Confirm Done Next Back Delete Rename
Lock Unlock Help Edit View File New Quit Exit Reset Clear Send Add Remove Enable Disable
Start Stop Finish Accept Decline Retry Skip Browse Search Find Replace Print Export Import
Settings Options Preferences Name Note Email City Title
""".split())
"""Labels that interface text uses everywhere (buttons, menus, fields)."""

ID_TOKENS = 1000
"""Numbers 0..999 as single tokens: element ids (``#12``) and box coordinates (a row's box
is then 7 tokens, not 12-16)."""

_ONSETS = tuple("b c d f g h j k l m n p r s t v w z br cl dr fl gr kr pl pr sk sl sn st tr".split())
_VOWELS = tuple("a e i o u ai ea oo ou".split())
_CODAS = ("", "", "", "n", "r", "l", "s", "k", "m", "th", "sh")


def pseudo_words(count: int = PSEUDO_WORD_COUNT, *, seed: int = 1234, avoid: frozenset[str] = frozenset()) -> list[str]:
    """``count`` distinct made-up words of two or three syllables (a fixed seed: the same list
    every time); every other one capitalised, as interface labels often are."""
    rng = random.Random(seed)
    found: list[str] = []
    seen = {w.lower() for w in avoid}
    while len(found) < count:
        syllables = rng.choice((2, 2, 3))
        word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)) + rng.choice(_CODAS)
        if word in seen or len(word) > 10:
            continue
        seen.add(word)
        found.append(word.capitalize() if len(found) % 2 else word)
    return found


def word_tokens(family_words: tuple[str, ...] = ()) -> list[str]:
    """Every whole-word token, in a fixed order: numbers, interface words, the family words
    (lower-case and capitalised forms), then the made-up words."""
    out: list[str] = [str(i) for i in range(ID_TOKENS)]
    for word in UI_WORDS + tuple(family_words) + tuple(w.capitalize() for w in family_words) \
            + tuple(w.lower() for w in UI_WORDS):
        if word not in out:
            out.append(word)
    taken = frozenset(out)
    out += pseudo_words(avoid=taken)
    return out
