-- Parley's first schema: accounts, inboxes with gapless counters, entries,
-- idempotency keys and delivery cursors.

CREATE TABLE users (
    id            text PRIMARY KEY,
    name          text NOT NULL,
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Access tokens are stored as the SHA-256 of their secret.
CREATE TABLE tokens (
    hash       bytea PRIMARY KEY,
    user_id    text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX tokens_user ON tokens (user_id);

-- One row per inbox (u/{user}, g/{group}); last_seq is bumped under the row
-- lock in the transaction that appends, which keeps sequences gapless.
CREATE TABLE inboxes (
    id       text PRIMARY KEY,
    last_seq bigint NOT NULL DEFAULT 0
);

CREATE TABLE entries (
    inbox     text   NOT NULL,
    seq       bigint NOT NULL,
    id        uuid   NOT NULL,
    sender    text   NOT NULL,
    recipient text   NOT NULL,
    ts        bigint NOT NULL,
    kind      text   NOT NULL,
    cid       text   NOT NULL DEFAULT '',
    data      bytea  NOT NULL,
    PRIMARY KEY (inbox, seq)
);
CREATE INDEX entries_id ON entries (id);

-- Idempotency: a (sender, cid) pair is stored once; a retry finds the first.
CREATE TABLE dedup (
    sender text NOT NULL,
    cid    text NOT NULL,
    id     uuid NOT NULL,
    PRIMARY KEY (sender, cid)
);

-- How far each device (MQTT client id) has acknowledged each inbox.
CREATE TABLE cursors (
    client_id  text   NOT NULL,
    inbox      text   NOT NULL,
    seq        bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, inbox)
);
