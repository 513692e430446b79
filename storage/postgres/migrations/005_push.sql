-- Push notifications: device tokens, per-user settings and mutes, and the
-- outbox of push jobs.

-- A token belongs to one user at a time: registering it again under another
-- user moves it.
CREATE TABLE push_devices (
    token       text NOT NULL PRIMARY KEY,
    user_id     text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    platform    text NOT NULL,
    environment text NOT NULL DEFAULT '',
    device      text NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX push_devices_user ON push_devices (user_id);

-- preview: 1 shows message text in notifications, 0 hides it.
CREATE TABLE push_settings (
    user_id text   NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    preview bigint NOT NULL DEFAULT 1
);

-- conv is "u/{peer}" or "g/{group}"; until NULL mutes for ever.
CREATE TABLE push_mutes (
    user_id text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    conv    text NOT NULL,
    until   timestamptz,
    PRIMARY KEY (user_id, conv)
);

-- One row per stored message of type msg, written in the transaction that
-- stores the message; deleted once its pushes are sent. lease_until (Unix
-- ms) is when a claimer's hold on the job lapses.
CREATE TABLE push_jobs (
    id          uuid   NOT NULL PRIMARY KEY,
    inbox       text   NOT NULL,
    seq         bigint NOT NULL,
    sender      text   NOT NULL,
    recipient   text   NOT NULL,
    ts          bigint NOT NULL,
    data        bytea  NOT NULL,
    lease_until bigint NOT NULL DEFAULT 0
);
CREATE INDEX push_jobs_ts ON push_jobs (ts);
CREATE INDEX push_jobs_inbox ON push_jobs (inbox);
