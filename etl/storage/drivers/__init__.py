"""What a database driver costs a run's start, spared: ``pymysql_start``."""
