"""Typed application state keys shared by the app factory and the handlers."""

from __future__ import annotations

from aiohttp import web

from bot.config import Settings
from bot.conversation_service import ConversationService
from bot.handoff.service import HandoffService
from bot.hub import EventHub
from bot.rasa_client import RasaPool
from bot.store.conversations import SqlConversationStore

SETTINGS = web.AppKey("settings", Settings)
SERVICE = web.AppKey("conversation_service", ConversationService)
STORE = web.AppKey("conversation_store", SqlConversationStore)
RASA = web.AppKey("rasa_pool", RasaPool)
HANDOFF = web.AppKey("handoff_service", HandoffService)
HUB = web.AppKey("event_hub", EventHub)
