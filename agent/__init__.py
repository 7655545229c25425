"""voice-agent: an offline phone voice agent (SIP/WebRTC, local STT, LLM and TTS)."""

__version__ = "0.1.0"
