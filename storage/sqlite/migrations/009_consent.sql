-- Consent: storage/postgres/migrations/009_consent.sql in SQLite types
-- (times in Unix microseconds).

CREATE TABLE blocks (
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    peer       TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, peer)
) STRICT, WITHOUT ROWID;

CREATE TABLE contact_list (
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    peer       TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, peer)
) STRICT, WITHOUT ROWID;

CREATE TABLE consent (
    user_id    TEXT NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    group_adds TEXT NOT NULL DEFAULT 'everyone' CHECK (group_adds IN ('everyone', 'contacts', 'nobody'))
) STRICT, WITHOUT ROWID;
