"""What ``verify`` reads from SQLite, which keeps whatever storage class a DBA writes: the
ledger's page in a form that cannot fail (``etl.integrity.sqlite.ledger``)."""
