"""The ledger's writes into each database; front door: ``inserts.insert_entries``."""
