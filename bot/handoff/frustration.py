"""A small, transparent frustration score for one user message, in [0, 1].

Signals, each capped, summed and clipped:
- negative words and phrases people use when a bot fails them ("useless", "this is
  ridiculous", "not what I asked"), 0.35 to 0.6 each;
- profanity, 0.6;
- shouting: at least three letters-only words, over half of them in capitals, 0.3;
- repeated "!" or "?" ("!!", "??", "?!"), 0.2.

Words are matched on word boundaries, case-insensitively, so "useless" counts and
"fuseless" does not. A score at or over ``handoff.frustration_threshold`` (default 0.6)
hands the conversation to a person.
"""

from __future__ import annotations

import re

_PHRASES: dict[str, float] = {
    "useless": 0.6,
    "stupid": 0.6,
    "pointless": 0.5,
    "ridiculous": 0.5,
    "terrible": 0.4,
    "awful": 0.4,
    "rubbish": 0.5,
    "garbage": 0.5,
    "hopeless": 0.5,
    "worst": 0.4,
    "angry": 0.5,
    "furious": 0.6,
    "annoyed": 0.4,
    "annoying": 0.4,
    "frustrated": 0.5,
    "frustrating": 0.5,
    "fed up": 0.5,
    "sick of": 0.5,
    "waste of time": 0.6,
    "not what i asked": 0.5,
    "you don't understand": 0.5,
    "you dont understand": 0.5,
    "doesn't work": 0.35,
    "doesnt work": 0.35,
    "not helpful": 0.5,
    "unacceptable": 0.5,
    "complaint": 0.35,
    "disgusting": 0.5,
    "idiot": 0.6,
    "again and again": 0.35,
    "for the last time": 0.6,
    "i already told you": 0.5,
    "are you even listening": 0.5,
}
_PROFANITY = ("damn", "hell", "crap", "shit", "fuck", "fucking", "bloody")

_PHRASE_RE = {p: re.compile(rf"\b{re.escape(p)}\b") for p in _PHRASES}
_PROFANITY_RE = re.compile(rf"\b({'|'.join(_PROFANITY)})\b")
_REPEATED_PUNCT = re.compile(r"[!?]{2,}")
_WORD = re.compile(r"[A-Za-z]+")


def frustration_score(text: str) -> float:
    lower = text.lower()
    score = sum(w for p, w in _PHRASES.items() if _PHRASE_RE[p].search(lower))
    if _PROFANITY_RE.search(lower):
        score += 0.6
    words = [w for w in _WORD.findall(text) if len(w) > 1]
    if len(words) >= 3 and sum(w.isupper() for w in words) / len(words) > 0.5:
        score += 0.3
    if _REPEATED_PUNCT.search(text):
        score += 0.2
    return round(min(1.0, score), 3)
