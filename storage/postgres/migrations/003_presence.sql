-- Presence: when each user was last seen (connected), and who may see it.
-- A row exists once a user has been seen or has chosen a privacy setting;
-- a user without one is never seen and visible to everyone.

CREATE TABLE presence (
    user_id   text NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    last_seen timestamptz,
    privacy   text NOT NULL DEFAULT 'everyone' CHECK (privacy IN ('everyone', 'contacts', 'nobody'))
);
