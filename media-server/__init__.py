"""receptionist media server: telephony transports, codecs, ASR, TTS, DTMF and barge-in.

It owns audio and talks to the bot service through the public conversation API; it has no
dialogue or routing logic. The voice pipeline arrives with its own issue; this package is the
place for it.
"""

__version__ = "0.1.0"
