"""Model engines behind small protocols: VAD, STT, LLM, TTS (real implementations and fakes)."""
