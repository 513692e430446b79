-- Parley's first schema for the embedded store: the tables and columns of the
-- Postgres schema (storage/postgres/migrations/001_init.sql) in SQLite types.
--
-- Mapping: text → TEXT, bytea → BLOB, bigint → INTEGER, uuid → TEXT (the
-- canonical 36-character form), timestamptz → INTEGER Unix microseconds (the
-- precision of timestamptz; integers compare correctly and index well).
-- Tables are STRICT, so a value of the wrong type is refused as Postgres
-- would refuse it.

CREATE TABLE users (
    id            TEXT    NOT NULL PRIMARY KEY,
    name          TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL DEFAULT (CAST(unixepoch('now', 'subsec') * 1000000 AS INTEGER))
) STRICT, WITHOUT ROWID;

-- Access tokens are stored as the SHA-256 of their secret.
CREATE TABLE tokens (
    hash       BLOB    NOT NULL PRIMARY KEY,
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('now', 'subsec') * 1000000 AS INTEGER)),
    expires_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX tokens_user ON tokens (user_id);

-- One row per inbox (u/{user}, g/{group}). last_seq is read and written only
-- by the single writer, inside the transaction that appends, which keeps
-- sequences gapless.
CREATE TABLE inboxes (
    id       TEXT    NOT NULL PRIMARY KEY,
    last_seq INTEGER NOT NULL DEFAULT 0
) STRICT, WITHOUT ROWID;

-- An ordinary rowid table: rows carry a payload of a few hundred bytes, too
-- large for WITHOUT ROWID to pay off; (inbox, seq) is its unique index.
CREATE TABLE entries (
    inbox     TEXT    NOT NULL,
    seq       INTEGER NOT NULL,
    id        TEXT    NOT NULL,
    sender    TEXT    NOT NULL,
    recipient TEXT    NOT NULL,
    ts        INTEGER NOT NULL,
    kind      TEXT    NOT NULL,
    cid       TEXT    NOT NULL DEFAULT '',
    data      BLOB    NOT NULL,
    PRIMARY KEY (inbox, seq)
) STRICT;
CREATE INDEX entries_id ON entries (id);

-- Idempotency: a (sender, cid) pair is stored once; a retry finds the first.
CREATE TABLE dedup (
    sender TEXT NOT NULL,
    cid    TEXT NOT NULL,
    id     TEXT NOT NULL,
    PRIMARY KEY (sender, cid)
) STRICT, WITHOUT ROWID;

-- How far each device (MQTT client id) has acknowledged each inbox.
CREATE TABLE cursors (
    client_id  TEXT    NOT NULL,
    inbox      TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    updated_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('now', 'subsec') * 1000000 AS INTEGER)),
    PRIMARY KEY (client_id, inbox)
) STRICT, WITHOUT ROWID;
