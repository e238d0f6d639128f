"""What the verify tests share: ``signed`` (a synced, signed store and verify's JSON report),
``spans`` (the parallel verify's stores, built once and copied) and ``verdict`` (the job with
signed checkpoints copied out, and verify's verdict on its one account)."""
