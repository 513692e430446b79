-- Deliveries: storage/postgres/migrations/007_deliveries.sql in SQLite
-- types.

CREATE TABLE deliveries (
    msg_id  TEXT    NOT NULL,
    user_id TEXT    NOT NULL,
    at      INTEGER NOT NULL DEFAULT (CAST(unixepoch('now', 'subsec') * 1000000 AS INTEGER)),
    PRIMARY KEY (msg_id, user_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX deliveries_at ON deliveries (at);
