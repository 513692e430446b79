-- Push: storage/postgres/migrations/005_push.sql in SQLite types.

CREATE TABLE push_devices (
    token       TEXT    NOT NULL PRIMARY KEY,
    user_id     TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    platform    TEXT    NOT NULL,
    environment TEXT    NOT NULL DEFAULT '',
    device      TEXT    NOT NULL DEFAULT '',
    updated_at  INTEGER NOT NULL DEFAULT (CAST(unixepoch('now', 'subsec') * 1000000 AS INTEGER))
) STRICT, WITHOUT ROWID;
CREATE INDEX push_devices_user ON push_devices (user_id);

CREATE TABLE push_settings (
    user_id TEXT    NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    preview INTEGER NOT NULL DEFAULT 1
) STRICT, WITHOUT ROWID;

CREATE TABLE push_mutes (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    conv    TEXT NOT NULL,
    until   INTEGER,
    PRIMARY KEY (user_id, conv)
) STRICT, WITHOUT ROWID;

CREATE TABLE push_jobs (
    id          TEXT    NOT NULL PRIMARY KEY,
    inbox       TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    sender      TEXT    NOT NULL,
    recipient   TEXT    NOT NULL,
    ts          INTEGER NOT NULL,
    data        BLOB    NOT NULL,
    lease_until INTEGER NOT NULL DEFAULT 0
) STRICT, WITHOUT ROWID;
CREATE INDEX push_jobs_ts ON push_jobs (ts);
CREATE INDEX push_jobs_inbox ON push_jobs (inbox);
