"""The client API room: the HTTP/WebSocket app (app.py), intake and queries, streams,
rate limits, the history indexer and Prometheus metrics (docs/API.md)."""
