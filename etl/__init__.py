"""zendesk-audit-etl: copy a Zendesk account's audit log into your own SQL database.

Imports nothing, so that a command loads only the modules it needs; the version lives
in ``etl.common.version``."""
