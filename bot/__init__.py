"""receptionist bot service: conversations, Rasa dialogue, handoff, desk and the public API.

This package knows text turns and events, never audio bytes (that is ``media_server``).
"""

__version__ = "0.1.0"
