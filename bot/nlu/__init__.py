"""Conversation designer tooling: validation and evaluation of the Rasa project."""
