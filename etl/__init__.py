"""zendesk-audit-etl: copy a Zendesk account's audit log into your own SQL database."""

__version__ = "0.1.0"
