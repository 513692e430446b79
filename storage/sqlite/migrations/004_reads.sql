-- Conversations and read cursors: storage/postgres/migrations/004_reads.sql in
-- SQLite types.
ALTER TABLE entries ADD COLUMN conv TEXT NOT NULL DEFAULT '';
CREATE INDEX entries_conv ON entries (inbox, conv, seq);

CREATE TABLE read_cursors (
    user_id    TEXT    NOT NULL,
    inbox      TEXT    NOT NULL,
    conv       TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    updated_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('now', 'subsec') * 1000000 AS INTEGER)),
    PRIMARY KEY (user_id, inbox, conv)
) STRICT, WITHOUT ROWID;
