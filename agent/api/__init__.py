"""The agent's HTTP API under /v1: API keys, and the call records."""
