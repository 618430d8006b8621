"""Grouping review candidates by wording, so a hundred variants of one question show as one
group.

Texts are normalised (lower case, punctuation, fillers and greetings removed), identical
normal forms are merged, and normal forms whose rapidfuzz ``token_sort_ratio`` is at least
``THRESHOLD`` are linked; a group is a connected component. Measured on a synthetic set (100
variants of one question with fillers, politeness, typos and re-wordings, plus 20 other
texts): token_sort_ratio at 75 puts all 100 variants in one group and mixes nothing;
``token_set_ratio`` mixes short texts into long ones ("the appointment" is a subset of many
questions), and char n-gram TF-IDF cosine either splits the variants or mixes groups.
The similarity matrix is computed in row blocks, so memory stays bounded."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from rapidfuzz import fuzz, process

from bot.review.collect import FALLBACK_INTENT, Candidate

THRESHOLD = 75
BLOCK = 1024
MAX_EXAMPLES = 8
FILLERS = re.compile(
    r"\b(um+|uh+|erm|er|hmm+|please|so|just|like|ok|okay|well|hi|hello|hey|sorry|thanks|"
    r"thank you|excuse me)\b"
)


def normalize(text: str) -> str:
    """What is compared: lower case, letters and digits, no fillers, single spaces."""
    t = re.sub(r"[^\w' ]+", " ", text.lower().replace("_", " "))
    t = FILLERS.sub(" ", t)
    t = re.sub(r"\s+", " ", t).strip()
    return t or re.sub(r"\s+", " ", text.lower()).strip()


@dataclass
class Group:
    id: str
    label: str
    count: int
    examples: list[str]
    intent: str | None  # the most common predicted intent (not nlu_fallback, if any other)
    intents: dict[str, int]
    reasons: dict[str, int]
    channels: dict[str, int]
    turn_ids: list[int]
    first_at: datetime
    last_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "count": self.count,
            "examples": self.examples,
            "intent": self.intent,
            "intents": self.intents,
            "reasons": self.reasons,
            "channels": self.channels,
            "turn_ids": self.turn_ids,
            "first_at": self.first_at.isoformat(),
            "last_at": self.last_at.isoformat(),
        }


class _Components:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        p = self.parent
        while p[x] != x:
            p[x] = p[p[x]]
            x = p[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def link(keys: Sequence[str], threshold: int = THRESHOLD, block: int = BLOCK) -> list[int]:
    """The component (index of its first member) of each key."""
    comps = _Components(len(keys))
    for start in range(0, len(keys), block):
        rows = keys[start : start + block]
        sim = process.cdist(
            rows,
            keys,
            scorer=fuzz.token_sort_ratio,
            score_cutoff=threshold,
            dtype=np.uint8,
            workers=1,
        )
        ii, jj = np.nonzero(sim)
        for i, j in zip(ii.tolist(), jj.tolist(), strict=True):
            a = start + i
            if j > a:
                comps.union(a, j)
    return [comps.find(i) for i in range(len(keys))]


def group(candidates: Sequence[Candidate], threshold: int = THRESHOLD) -> list[Group]:
    """Groups of ``candidates``, the largest first."""
    by_key: dict[str, list[Candidate]] = {}
    for c in candidates:
        by_key.setdefault(normalize(c.text), []).append(c)
    keys = list(by_key)
    roots = link(keys, threshold)
    members: dict[int, list[str]] = {}
    for key, root in zip(keys, roots, strict=True):
        members.setdefault(root, []).append(key)
    out: list[Group] = []
    for key_list in members.values():
        cands = [c for k in key_list for c in by_key[k]]
        texts = Counter(c.text.strip() for c in cands)
        # the label: the most frequent wording, the shortest on ties
        ranked = sorted(texts.items(), key=lambda kv: (-kv[1], len(kv[0]), kv[0]))
        intents = Counter(c.intent for c in cands if c.intent)
        understood = [(i, n) for i, n in intents.most_common() if i != FALLBACK_INTENT]
        top = understood[0][0] if understood else (FALLBACK_INTENT if intents else None)
        ids = sorted(c.turn_id for c in cands)
        out.append(
            Group(
                id=f"g{ids[0]}",
                label=ranked[0][0],
                count=len(cands),
                examples=[t for t, _ in ranked[:MAX_EXAMPLES]],
                intent=top,
                intents=dict(intents.most_common()),
                reasons=dict(Counter(r for c in cands for r in c.reasons).most_common()),
                channels=dict(Counter(c.channel for c in cands).most_common()),
                turn_ids=ids,
                first_at=min(c.created_at for c in cands),
                last_at=max(c.created_at for c in cands),
            )
        )
    out.sort(key=lambda g: (-g.count, g.label))
    return out
