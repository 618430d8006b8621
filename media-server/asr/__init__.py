"""Speech recognition behind one protocol: Vosk (preferred), PocketSphinx (English fallback)."""
