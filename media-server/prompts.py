"""What the media server itself says on a call: greeting, reprompts, queue updates.

These are call-handling phrases, not dialogue: what the caller is answered comes from the
bot. Languages without their own entry use English.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Prompts:
    greeting: str
    reprompt: str
    goodbye: str
    unavailable: str
    queue_position: str  # {position}
    queue_wait: str  # {minutes}
    queue_generic: str
    options_intro: str
    joined: str  # {agent}
    or_word: str
    callback_offer: str = "If you'd rather we call you back, press {key}."
    callback_ask_number: str = "Please key in the number we should call, then press the hash key."
    callback_confirmed: str = "Thank you. We will call you back on {number}. Goodbye."
    callback_bad_number: str = "Sorry, I didn't get a phone number. Please hold."
    callback_failed: str = "Sorry, I couldn't book the callback. Please hold."
    asr_lost: str = "Sorry, I missed that. Could you say it again?"  # the recognizer failed
    transferring: str = "I'm transferring your call now."
    transfer_failed: str = "Sorry, I couldn't transfer your call. Please hold for the next person."

    def queue(self, position: int | None, estimated_wait_s: float | None) -> str:
        parts = []
        if position is not None:
            parts.append(self.queue_position.format(position=position))
        if estimated_wait_s is not None:
            minutes = max(1, round(estimated_wait_s / 60))
            parts.append(self.queue_wait.format(minutes=minutes))
        return " ".join(parts) if parts else self.queue_generic

    def options(self, options: tuple[str, ...]) -> str:
        if len(options) == 1:
            return f"{self.options_intro} {options[0]}."
        return f"{self.options_intro} {', '.join(options[:-1])} {self.or_word} {options[-1]}."

    def agent_joined(self, agent: str) -> str:
        return self.joined.format(agent=agent or "An agent").strip()

    def offer_callback(self, key: str) -> str:
        spoken = {"*": "star", "#": "hash"}.get(key, key)
        return self.callback_offer.format(key=spoken)

    def callback_booked(self, number: str) -> str:
        # digit by digit, the way a number is read back
        return self.callback_confirmed.format(number=" ".join(c for c in number if c.isdigit()))


ENGLISH = Prompts(
    greeting="Hello, thanks for calling. How can I help you today?",
    reprompt="Sorry, I didn't hear anything. How can I help you?",
    goodbye="I'll let you go now. Thanks for calling, goodbye.",
    unavailable="Sorry, I'm having trouble right now. Please try again in a few minutes.",
    queue_position="You are number {position} in the queue.",
    queue_wait="The estimated wait is about {minutes} minutes.",
    queue_generic="Please hold while I connect you to a person.",
    options_intro="You can say",
    joined="{agent} has joined the call.",
    or_word="or",
)

# Prompts follow the voice: the bundled Piper voice is English, so is every prompt until a
# voice (and prompts) for another language are configured.
_BY_LANGUAGE = {"en": ENGLISH}


def prompts_for(language: str) -> Prompts:
    return _BY_LANGUAGE.get(language.split("-")[0].lower(), ENGLISH)
