"""The stored columns' bounded lengths, in characters, written once.

``etl.storage.schema`` builds its columns from them; the record parser rejects a longer
value (on SQLite too, so every database keeps the same records) and the config refuses a
longer account name, without either importing SQLAlchemy.
"""

from __future__ import annotations

ACCOUNT_LENGTH = 255  # every table's account (and export consumer) column
RECORD_ID_LENGTH = 64  # a reject's id, whatever the record carried
# The bounded text columns of an audit record; the other texts are unbounded.
AUDIT_TEXT_LENGTHS = {"action": 255, "ip_address": 64, "source_type": 255}
# The bounded text columns of an access-log record (indexed ones: the who-viewed questions);
# its other texts are unbounded. ``path`` is the URL's path, kept only when it fits.
ACCESS_TEXT_LENGTHS = {"id": 64, "user_id": 64, "ip_address": 64}
ACCESS_PATH_LENGTH = 500  # with account, within MySQL's 3072-byte index key (utf8mb4)
STREAM_LENGTH = 32  # a stream's name: "audit_logs", "access_logs"
