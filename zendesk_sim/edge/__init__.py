"""What stands between a request and the logs, as at Zendesk's edge: ``auth`` (the
credentials the account accepts, OAuth tokens), ``ratelimit`` (the per-minute budget and
its headers) and ``faults`` (each way a server was seen to misbehave, queued by tests)."""
