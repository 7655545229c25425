"""What outlives a call: the call store (SQLite), recordings, transcripts and the webhook outbox."""
