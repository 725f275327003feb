"""The HTTP API (FastAPI): submission, blobs, inboxes, sent messages, registry and trace."""
