-- Acknowledgements for push: storage/postgres/migrations/006_push_acks.sql in
-- SQLite types.

CREATE TABLE push_acks (
    msg_id  TEXT    NOT NULL,
    user_id TEXT    NOT NULL,
    at      INTEGER NOT NULL DEFAULT (CAST(unixepoch('now', 'subsec') * 1000000 AS INTEGER)),
    PRIMARY KEY (msg_id, user_id)
) STRICT, WITHOUT ROWID;
