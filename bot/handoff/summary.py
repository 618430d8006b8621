"""The one-paragraph summary an agent reads first, built from the transcript's intents and
the slots collected so far."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.store.records import Conversation, Turn

REASONS = {
    "user_request": "asked to speak to a person",
    "bot_request": "was passed on by the bot",
    "dependency_down": "could not be answered because the bot was unavailable",
    "callback_request": "asked to be called back",
}


def _intents(turns: Sequence[Turn]) -> list[str]:
    seen: list[str] = []
    for t in turns:
        if t.role == "user" and t.intent and t.intent not in seen and t.intent != "nlu_fallback":
            seen.append(t.intent)
    return seen


def build_summary(
    conv: Conversation, reason: str, detail: str | None, slots: dict[str, Any] | None
) -> str:
    who = conv.customer.name or "The customer"
    contact = ", ".join(x for x in (conv.customer.phone, conv.customer.email) if x)
    parts = [f"{who}{f' ({contact})' if contact else ''} contacted us by {conv.channel}."]
    intents = _intents(conv.turns)
    if intents:
        parts.append("Topics: " + ", ".join(i.replace("_", " ") for i in intents) + ".")
    fallbacks = sum(1 for t in conv.turns if t.role == "user" and t.intent == "nlu_fallback")
    if fallbacks:
        parts.append(f"The bot did not understand {fallbacks} message(s).")
    if slots:
        parts.append(
            "Collected: "
            + ", ".join(f"{k} = {v}" for k, v in sorted(slots.items()) if v not in (None, ""))
            + "."
        )
    why = REASONS.get(reason, reason.replace("_", " "))
    parts.append(
        f"They {why}{f' ({detail})' if detail else ''} after "
        f"{sum(1 for t in conv.turns if t.role == 'user')} message(s)."
    )
    return " ".join(parts)
