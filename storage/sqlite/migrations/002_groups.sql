-- Groups, their members, and contacts: storage/postgres/migrations/002_groups.sql
-- in SQLite types.

CREATE TABLE groups (
    id         TEXT    NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    owner      TEXT    NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('now', 'subsec') * 1000000 AS INTEGER))
) STRICT, WITHOUT ROWID;

CREATE TABLE group_members (
    group_id    TEXT    NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id     TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        TEXT    NOT NULL DEFAULT 'member',
    added_at    INTEGER NOT NULL DEFAULT (CAST(unixepoch('now', 'subsec') * 1000000 AS INTEGER)),
    removed_seq INTEGER,
    PRIMARY KEY (group_id, user_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX group_members_user ON group_members (user_id) WHERE removed_seq IS NULL;

CREATE TABLE contacts (
    user_id TEXT    NOT NULL,
    peer    TEXT    NOT NULL,
    last_ts INTEGER NOT NULL,
    PRIMARY KEY (user_id, peer)
) STRICT, WITHOUT ROWID;
