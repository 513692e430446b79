-- Presence: storage/postgres/migrations/003_presence.sql in SQLite types.

CREATE TABLE presence (
    user_id   TEXT    NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    last_seen INTEGER,
    privacy   TEXT    NOT NULL DEFAULT 'everyone' CHECK (privacy IN ('everyone', 'contacts', 'nobody'))
) STRICT, WITHOUT ROWID;
