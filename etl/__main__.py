"""`python -m etl` does what the `zendesk-audit-etl` console script does."""

from etl.cli.main import run

run()
