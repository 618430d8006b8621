"""Speech synthesis: Piper voices, sentence splitting, and a disk cache of prompts."""
