"""Custom actions. They run in the Rasa virtualenv (rasa-sdk), not in the bot service."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher


class ActionHandoff(Action):
    """Tell the user a person is coming and signal the handoff to the bot service.

    The bot service recognises the custom payload ``{"handoff": {"reason", "skill"}}`` on any
    reply, records it and marks the conversation for handoff.
    """

    def name(self) -> str:
        return "action_handoff"

    def run(
        self,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: dict[str, Any],
    ) -> list[dict[str, Any]]:
        dispatcher.utter_message(response="utter_handoff")
        dispatcher.utter_message(
            json_message={"handoff": {"reason": "user_request", "skill": "general"}}
        )
        return []
