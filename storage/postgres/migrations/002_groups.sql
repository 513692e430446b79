-- Groups, their members, and contacts (who has exchanged direct messages).

CREATE TABLE groups (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    owner      text NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- A member row outlives removal: removed_seq is the group's seq at removal,
-- so a former member can still read the history it was part of.
CREATE TABLE group_members (
    group_id    text NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id     text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        text NOT NULL DEFAULT 'member',
    added_at    timestamptz NOT NULL DEFAULT now(),
    removed_seq bigint,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id) WHERE removed_seq IS NULL;

-- Pairs of users who have exchanged direct messages, both ways, kept by the
-- writer in the transaction that stores a DM.
CREATE TABLE contacts (
    user_id text   NOT NULL,
    peer    text   NOT NULL,
    last_ts bigint NOT NULL,
    PRIMARY KEY (user_id, peer)
);
