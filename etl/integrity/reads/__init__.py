"""What ``verify`` reads of the stored rows (``etl.integrity.streams`` reads the ledger)."""
