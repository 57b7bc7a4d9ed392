"""The long-running service: scheduler, watchers, responder, HTTP API, metrics."""
