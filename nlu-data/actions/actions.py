"""Custom actions. They run in the Rasa virtualenv (rasa-sdk), not in the bot service.

Answers about the business come from ``business.yml`` (see ``business.py``), so editing that
file changes them without retraining. A handoff to a person is a custom payload
``{"handoff": {"reason", "skill"}}`` on a bot message; the bot service recognises it.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from typing import Any

import aiohttp
import phonenumbers
from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.business import Profile, clock, current_profile, day_label, intervals_text
from actions.timeparse import resolve

log = logging.getLogger(__name__)

BOOKINGS_URL_ENV = "RECEPTIONIST_BOOKINGS_URL"
CALLBACKS_URL_ENV = "RECEPTIONIST_CALLBACKS_URL"
# the bot service's internal endpoints want this installation's token (set by receptionist up)
INTERNAL_TOKEN_ENV = "RECEPTIONIST_INTERNAL_TOKEN"
DEFAULT_REGION = "GB"
# Intents that leave a form instead of answering its question (when confidently predicted).
ESCAPE_INTENTS = {"request_human", "emergency", "stop", "goodbye"}
ESCAPE_CONFIDENCE = 0.7
# Titles of the suggestion buttons the fallback ladder offers.
INTENT_TITLES = {
    "opening_hours": "Opening hours",
    "open_now": "Are you open now?",
    "location": "Where you are",
    "parking": "Parking",
    "contact_details": "Phone and email",
    "services": "Services",
    "prices": "Prices",
    "book_appointment": "Book an appointment",
    "reschedule_appointment": "Move an appointment",
    "cancel_appointment": "Cancel an appointment",
    "running_late": "Running late",
    "booking_status": "My booking",
    "request_callback": "Call me back",
    "complaint": "Make a complaint",
    "billing_question": "A billing question",
    "leave_message": "Leave a message",
    "emergency": "It's urgent",
    "change_language": "Another language",
    "help": "What can you do?",
    "greet": "Start again",
}
# Which department handles the intents that end in a handoff (ids from business.yml).
INTENT_SKILLS = {
    "billing_question": "billing",
    "complaint": "support",
    "reschedule_appointment": "sales",
    "cancel_appointment": "sales",
    "booking_status": "sales",
}
INTENTS_WITH_OWN_WORDS = {
    "billing_question",
    "complaint",
    "reschedule_appointment",
    "cancel_appointment",
    "booking_status",
    "leave_message",
    "emergency",
}
# An FAQ is answered only when the response selector is at least this sure; below it the
# message counts as not understood (measured: see README.md, "FAQ answers").
FAQ_MIN_CONFIDENCE = 0.25
NOT_SUGGESTED = {"nlu_fallback", "out_of_scope", "chitchat", "affirm", "deny", "inform"}


def profile() -> Profile:
    return current_profile()


def now_for(p: Profile) -> datetime:
    """The one place the actions read the clock."""
    return datetime.now(p.tz)


def latest_entity(tracker: Tracker, name: str) -> str | None:
    for e in tracker.latest_message.get("entities") or []:
        if e.get("entity") == name and e.get("value"):
            return str(e["value"])
    return None


def latest_intent(tracker: Tracker) -> tuple[str | None, float]:
    intent = tracker.latest_message.get("intent") or {}
    return intent.get("name"), float(intent.get("confidence") or 0.0)


def handoff_payload(reason: str, skill: str) -> dict[str, Any]:
    return {"handoff": {"reason": reason, "skill": skill}}


# -- answers from the business profile ------------------------------------------------------


class ActionOpeningHours(Action):
    """Weekly hours, or the hours of the day the user named ("on Sunday", "25 December")."""

    def name(self) -> str:
        return "action_opening_hours"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        p = profile()
        now = now_for(p)
        when = latest_entity(tracker, "time")
        text = tracker.latest_message.get("text")
        named = p.find_named_day(when, now.date()) or p.find_named_day(text, now.date())
        resolved = resolve(when, now, p.tz) if when and named is None else None
        if named is not None:
            dispatcher.utter_message(text=p.describe_day(named, now))
        elif resolved is None:
            dispatcher.utter_message(text=p.describe_week())
        elif resolved.has_time and resolved.day == now.date():
            dispatcher.utter_message(text=p.describe_now(resolved.when))
        else:
            dispatcher.utter_message(text=p.describe_day(resolved.day, now))
        return []


class ActionOpenNow(Action):
    def name(self) -> str:
        return "action_open_now"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        p = profile()
        dispatcher.utter_message(text=p.describe_now(now_for(p)))
        return []


class ActionLocation(Action):
    def name(self) -> str:
        return "action_location"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        p = profile()
        text = f"We're at {p.address}."
        if p.directions:
            text += f" {p.directions}"
        dispatcher.utter_message(text=text)
        return []


class ActionParking(Action):
    def name(self) -> str:
        return "action_parking"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        p = profile()
        dispatcher.utter_message(text=p.parking or f"Please call us on {p.phone} about parking.")
        return []


class ActionContactDetails(Action):
    def name(self) -> str:
        return "action_contact_details"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        p = profile()
        text = f"You can call us on {p.phone} or email {p.email}."
        if p.website:
            text += f" Our website is {p.website}."
        dispatcher.utter_message(text=text)
        return []


class ActionServices(Action):
    def name(self) -> str:
        return "action_services"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        p = profile()
        dispatcher.utter_message(
            text=p.describe_services() + " Would you like to book one?",
            buttons=[{"title": "Book an appointment", "payload": "/book_appointment"}],
        )
        return []


class ActionPrices(Action):
    """The price of the service named in the message (or the one in the slot), else all."""

    def name(self) -> str:
        return "action_prices"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        p = profile()
        named = latest_entity(tracker, "service") or tracker.latest_message.get("text")
        service = p.find_service(named)
        if service is None:
            prices = "; ".join(f"{s.name} {s.price_text(p.currency)}" for s in p.services)
            dispatcher.utter_message(text=f"Our prices: {prices}.")
        else:
            dispatcher.utter_message(text=p.describe_price(service))
        return []


class ActionLanguages(Action):
    def name(self) -> str:
        return "action_languages"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        p = profile()
        bot = " and ".join(p.bot_languages)
        staff = ", ".join(p.staff_languages)
        dispatcher.utter_message(
            text=f"I can only chat in {bot}, I'm afraid. Our team at the desk speaks {staff}: "
            "would you like me to put you through to a person?",
            buttons=[
                {"title": "Yes, a person please", "payload": "/request_human"},
                {"title": "No, carry on", "payload": "/deny"},
            ],
        )
        return []


# -- handoff and the fallback ladder -------------------------------------------------------


class ActionHandoff(Action):
    """Signal a handoff to the bot service, routed to the department the user named
    (``department`` entity), else the one that handles the intent, else the default.

    For an explicit request for a person it also says a colleague is coming; the other
    intents that end here (complaint, billing, ...) have said their own words first."""

    def name(self) -> str:
        return "action_handoff"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        intent, _ = latest_intent(tracker)
        p = profile()
        named = latest_entity(tracker, "department")
        skill = p.skill_for(named or INTENT_SKILLS.get(intent or ""))
        if intent not in INTENTS_WITH_OWN_WORDS:
            dispatcher.utter_message(response="utter_handoff")
        reason = "emergency" if intent == "emergency" else "user_request"
        dispatcher.utter_message(json_message=handoff_payload(reason, skill))
        return []


class ActionFallbackLadder(Action):
    """Not understood: the first time, ask to rephrase and offer the likeliest topics as
    buttons; the second time in a row, hand off to a person (reason ``fallback``)."""

    def name(self) -> str:
        return "action_fallback_ladder"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        if consecutive_fallbacks(tracker.events) >= 2:
            dispatcher.utter_message(response="utter_fallback_handoff")
            dispatcher.utter_message(
                json_message=handoff_payload("fallback", profile().default_skill)
            )
            return []
        ranking = tracker.latest_message.get("intent_ranking") or []
        buttons = []
        for item in ranking:
            name = item.get("name")
            if name in NOT_SUGGESTED or name not in INTENT_TITLES:
                continue
            buttons.append({"title": INTENT_TITLES[name], "payload": f"/{name}"})
            if len(buttons) == 3:
                break
        buttons.append({"title": "Talk to a person", "payload": "/request_human"})
        dispatcher.utter_message(response="utter_ask_rephrase", buttons=buttons)
        return []


def faq_selection(parse_data: dict[str, Any]) -> tuple[str | None, float]:
    """The FAQ answer the response selector chose (``utter_faq/…``) and its confidence."""
    selector = (parse_data.get("response_selector") or {}).get("faq") or {}
    response = selector.get("response") or {}
    return response.get("utter_action"), float(response.get("confidence") or 0.0)


def understood(parse_data: dict[str, Any]) -> bool:
    name = (parse_data.get("intent") or {}).get("name")
    if name == "nlu_fallback":
        return False
    return not (name == "faq" and faq_selection(parse_data)[1] < FAQ_MIN_CONFIDENCE)


def consecutive_fallbacks(events: list[dict[str, Any]]) -> int:
    """How many of the latest user messages in a row were not understood."""
    count = 0
    for e in reversed(events):
        if e.get("event") != "user":
            continue
        if understood(e.get("parse_data") or {}):
            break
        count += 1
    return count


class ActionFaq(Action):
    """The FAQ answer the response selector chose, if it is sure enough; otherwise the
    message is treated as not understood (the fallback ladder)."""

    def name(self) -> str:
        return "action_faq"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        answer, confidence = faq_selection(tracker.latest_message)
        if answer and confidence >= FAQ_MIN_CONFIDENCE:
            dispatcher.utter_message(response=answer)
            return []
        return ActionFallbackLadder().run(dispatcher, tracker, domain)


# -- booking and callback forms --------------------------------------------------------------


def escaping(tracker: Tracker) -> bool:
    name, confidence = latest_intent(tracker)
    return name in ESCAPE_INTENTS and confidence >= ESCAPE_CONFIDENCE


def answer_to(tracker: Tracker, slot: str) -> str | None:
    """The user's whole message, when it answers the question the form asked for ``slot``."""
    if tracker.get_slot("requested_slot") != slot or escaping(tracker):
        return None
    text = tracker.latest_message.get("text") or ""
    return None if text.startswith("/") else text


def parse_phone(text: str) -> str | None:
    """The number in E.164 form, if ``text`` holds a valid phone number (spoken digits
    "oh seven seven..." included)."""
    words = {
        "oh": "0", "o": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
        "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9",
    }  # fmt: skip
    tokens: list[str] = []
    repeat = 1
    for tok in text.lower().replace("-", " ").split():
        if tok in ("double", "triple"):
            repeat = 2 if tok == "double" else 3
            continue
        tokens.append(words.get(tok, tok) * repeat if tok in words else tok)
        repeat = 1
    candidate = " ".join(tokens)
    for match in phonenumbers.PhoneNumberMatcher(candidate, DEFAULT_REGION):
        if phonenumbers.is_valid_number(match.number):
            return phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
    digits = "".join(ch for ch in candidate if ch.isdigit() or ch == "+")
    try:
        number = phonenumbers.parse(digits, DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return None
    if phonenumbers.is_valid_number(number):
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return None


def clean_name(text: str) -> str | None:
    t = text.strip().strip(".!")
    low = t.lower()
    for lead in (
        "my name is ",
        "my name's ",
        "the name is ",
        "name is ",
        "it's ",
        "its ",
        "it is ",
        "this is ",
        "i'm ",
        "im ",
        "i am ",
        "call me ",
        "um ",
        "er ",
    ):
        if low.startswith(lead):
            t, low = t[len(lead) :], low[len(lead) :]
    words = [w for w in t.replace(",", " ").split() if w.isalpha() or "-" in w or "'" in w]
    if not words or len(words) > 5:
        return None
    return " ".join(w[:1].upper() + w[1:] for w in words)


def when_text(p: Profile, when: datetime) -> str:
    return f"{day_label(when.date(), now_for(p).date())} at {clock(when.time())}"


class ValidateBookingForm(FormValidationAction):
    """Extracts the answers of the booking form and checks them against business.yml: the
    service exists, the time is in the future, inside opening hours and not on a closure day,
    the phone number is valid. A rejected answer is re-asked with the reason."""

    def name(self) -> str:
        return "validate_booking_form"

    async def extract_service(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        text = latest_entity(tracker, "service") or answer_to(tracker, "service")
        return {"service": text} if text else {}

    async def extract_appointment_time(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        text = answer_to(tracker, "appointment_time")
        if text is None and tracker.get_slot("appointment_time") is None:
            # "book a massage tomorrow at 3": the time in the message that started the form
            text = latest_entity(tracker, "time")
        return {"appointment_time": text} if text else {}

    async def extract_customer_name(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        text = answer_to(tracker, "customer_name")
        if text is None:
            return {}
        # "my name is Jane Doe": the whole answer, cleaned, unless it says more than a name
        # and the entity extractor found one inside it
        entity = latest_entity(tracker, "person")
        name = clean_name(text)
        if entity and (name is None or entity.lower() not in name.lower() or len(name.split()) > 3):
            return {"customer_name": entity}
        return {"customer_name": text}

    async def extract_phone(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        text = answer_to(tracker, "phone")
        return {"phone": text} if text else {}

    def validate_service(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        p = profile()
        service = p.find_service(str(value))
        if service is None:
            names = ", ".join(s.name for s in p.services)
            dispatcher.utter_message(text=f'Sorry, we don\'t offer "{value}". We can book {names}.')
            return {"service": None}
        return {"service": service.id}

    def validate_appointment_time(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        p = profile()
        now = now_for(p)
        resolved = resolve(str(value), now, p.tz)
        if resolved is None:
            dispatcher.utter_message(
                text="Sorry, I didn't catch a date and time there, for example "
                '"tomorrow at 3 pm" or "next Tuesday at 10".'
            )
            return {"appointment_time": None}
        when = resolved.when
        if not resolved.has_time:
            day = p.hours_on(resolved.day)
            if day.closed or resolved.day < now.date():
                pass  # explained below
            else:
                dispatcher.utter_message(
                    text=f"What time {when_text(p, when).split(' at ')[0]}? "
                    f"We're open {intervals_of(p, when)}."
                )
                return {"appointment_time": None}
        reason = booking_time_problem(p, when, now, tracker.get_slot("service"))
        if reason:
            dispatcher.utter_message(text=reason)
            return {"appointment_time": None}
        return {"appointment_time": when.isoformat()}

    def validate_customer_name(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        name = clean_name(str(value))
        if name is None:
            dispatcher.utter_message(text="Sorry, I didn't get your name.")
        return {"customer_name": name}

    def validate_phone(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        number = parse_phone(str(value))
        if number is None:
            dispatcher.utter_message(
                text=f'Sorry, "{value}" doesn\'t look like a phone number I can use. '
                "Please give the full number, for example 07912 345678."
            )
        return {"phone": number}


def intervals_of(p: Profile, when: datetime) -> str:
    return intervals_text(p.hours_on(when.date()).intervals)


def booking_time_problem(
    p: Profile, when: datetime, now: datetime, service_id: str | None
) -> str | None:
    """Why an appointment cannot start at ``when`` (None if it can)."""
    service = p.find_service(service_id.replace("_", " ")) if service_id else None
    minutes = service.duration_minutes if service else 30
    day = p.hours_on(when.date())
    if when <= now:
        return "That time has already passed. When would you like to come in?"
    if day.closed:
        why = f" for {day.reason}" if day.reason else ""
        nxt = p.next_opening(when.replace(hour=23, minute=59))
        after = f" The next day we're open is {when_text(p, nxt).split(' at ')[0]}." if nxt else ""
        return (
            f"We're closed {when_text(p, when).split(' at ')[0]}{why}.{after} Which day suits you?"
        )
    if not p.fits_opening_hours(when, minutes):
        return (
            f"{when_text(p, when)[0].upper()}{when_text(p, when)[1:]} is outside our opening "
            f"hours: that day we're open {intervals_text_of(day.intervals)}, and the "
            f"appointment takes {minutes} minutes. What time would suit you?"
        )
    return None


def intervals_text_of(iv: Any) -> str:
    return intervals_text(iv)


class ActionConfirmBooking(Action):
    """Read the booking back and ask for a yes or no."""

    def name(self) -> str:
        return "action_confirm_booking"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        p = profile()
        service = p.find_service(str(tracker.get_slot("service") or "").replace("_", " "))
        when = datetime.fromisoformat(str(tracker.get_slot("appointment_time")))
        what = service.name if service else str(tracker.get_slot("service"))
        price = f" ({service.price_text(p.currency)})" if service else ""
        dispatcher.utter_message(
            text=f"Just to confirm: a {what}{price} {when_text(p, when)}, for "
            f"{tracker.get_slot('customer_name')}, phone {tracker.get_slot('phone')}. "
            "Shall I book it?",
            buttons=[
                {"title": "Yes, book it", "payload": "/affirm"},
                {"title": "No", "payload": "/deny"},
            ],
        )
        return []


def booking_json(tracker: Tracker, p: Profile) -> dict[str, Any]:
    service = p.find_service(str(tracker.get_slot("service") or "").replace("_", " "))
    return {
        "type": "booking",
        "conversation_id": tracker.sender_id,
        "service": {
            "id": tracker.get_slot("service"),
            "name": service.name if service else None,
            "price": service.price if service else None,
            "currency": p.currency,
            "duration_minutes": service.duration_minutes if service else None,
        },
        "start": tracker.get_slot("appointment_time"),
        "timezone": p.timezone,
        "customer": {
            "name": tracker.get_slot("customer_name"),
            "phone": tracker.get_slot("phone"),
        },
    }


async def post_json(url: str, body: dict[str, Any]) -> bool:
    """POST ``body`` with the installation's token; True on a 2xx answer. Failures are
    logged, never raised."""
    token = os.environ.get(INTERNAL_TOKEN_ENV, "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        timeout = aiohttp.ClientTimeout(total=5)
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.post(url, json=body, headers=headers) as resp,
        ):
            if 200 <= resp.status < 300:
                return True
            log.warning("booking.post_rejected url=%s status=%s", url, resp.status)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        log.warning("booking.post_failed url=%s error=%r", url, exc)
    return False


class ActionSubmitBooking(Action):
    """Send the confirmed booking as JSON to ``RECEPTIONIST_BOOKINGS_URL`` (when set)."""

    def name(self) -> str:
        return "action_submit_booking"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        p = profile()
        body = booking_json(tracker, p)
        url = os.environ.get(BOOKINGS_URL_ENV)
        when = when_text(p, datetime.fromisoformat(str(body["start"])))
        if url and await post_json(url, body):
            dispatcher.utter_message(
                text=f"You're booked in {when}. See you then, {body['customer']['name']}!"
            )
        else:
            if not url:
                log.info("booking.not_sent no %s set: %s", BOOKINGS_URL_ENV, json.dumps(body))
            dispatcher.utter_message(
                text=f"Thank you. I've taken your booking request for {when}; a colleague will "
                f"confirm it by phone on {body['customer']['phone']}."
            )
        return [SlotSet(s, None) for s in ("service", "appointment_time")]


class ValidateCallbackForm(FormValidationAction):
    def name(self) -> str:
        return "validate_callback_form"

    async def extract_callback_phone(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        text = answer_to(tracker, "callback_phone")
        return {"callback_phone": text} if text else {}

    async def extract_callback_time(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        text = answer_to(tracker, "callback_time")
        return {"callback_time": text} if text else {}

    def validate_callback_phone(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        number = parse_phone(str(value))
        if number is None:
            dispatcher.utter_message(
                text=f'Sorry, "{value}" doesn\'t look like a phone number I can call. '
                "Please give the full number, for example 07912 345678."
            )
        return {"callback_phone": number}

    def validate_callback_time(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        p = profile()
        now = now_for(p)
        text = str(value).lower()
        if any(w in text for w in ("asap", "as soon as", "now", "any time", "anytime")):
            start = now if p.open_at(now) else p.next_opening(now)
            return {"callback_time": (start or now).isoformat()}
        resolved = resolve(str(value), now, p.tz)
        if resolved is None:
            dispatcher.utter_message(
                text='Sorry, when should we call? For example "this afternoon" or "tomorrow at 10".'
            )
            return {"callback_time": None}
        when = resolved.when
        if when <= now:
            dispatcher.utter_message(text="That time has already passed. When should we call?")
            return {"callback_time": None}
        if not p.open_at(when):
            nxt = p.next_opening(when)
            hint = f" The next time we can call is {when_text(p, nxt)}." if nxt else ""
            dispatcher.utter_message(
                text=f"We can only call while we're open, and {when_text(p, when)} we're "
                f"closed.{hint} When should we call?"
            )
            return {"callback_time": None}
        return {"callback_time": when.isoformat()}


class ActionSubmitCallback(Action):
    """Send the callback request as JSON to ``RECEPTIONIST_CALLBACKS_URL`` (when set)."""

    def name(self) -> str:
        return "action_submit_callback"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        p = profile()
        start = str(tracker.get_slot("callback_time"))
        body = {
            "type": "callback",
            "conversation_id": tracker.sender_id,
            "phone": tracker.get_slot("callback_phone"),
            "at": start,
            "timezone": p.timezone,
            "skill": p.default_skill,
        }
        url = os.environ.get(CALLBACKS_URL_ENV)
        if url:
            await post_json(url, body)
        else:
            log.info("callback.not_sent no %s set: %s", CALLBACKS_URL_ENV, json.dumps(body))
        dispatcher.utter_message(
            text=f"Thanks, a colleague will call you on {body['phone']} "
            f"{when_text(p, datetime.fromisoformat(start))}."
        )
        return [SlotSet("callback_time", None)]


class ActionRepeat(Action):
    """Say again what the bot said in answer to the previous user message."""

    def name(self) -> str:
        return "action_repeat"

    def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        said: list[dict[str, Any]] = []
        users_seen = 0
        for e in reversed(tracker.events):
            if e.get("event") == "user":
                users_seen += 1
                if users_seen == 2:
                    break
            elif e.get("event") == "bot" and users_seen == 1:
                said.append(e)
        texts = [e for e in reversed(said) if e.get("text")]
        if not texts:
            dispatcher.utter_message(text="I haven't said anything yet. How can I help?")
            return []
        for e in texts:
            data = e.get("data") or {}
            dispatcher.utter_message(text=e["text"], buttons=data.get("buttons") or [])
        return []
