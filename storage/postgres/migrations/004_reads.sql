-- Conversations and read cursors.
--
-- entries.conv names the conversation an entry of a user's inbox belongs
-- to: the other user of a direct message (or of a receipt), "g/{group}" for
-- entries about a group; "" in group inboxes, which are one conversation.
ALTER TABLE entries ADD COLUMN conv text NOT NULL DEFAULT '';
CREATE INDEX entries_conv ON entries (inbox, conv, seq);

-- How far each user has read: per inbox, and within a user's own inbox per
-- conversation (conv = "" covers the whole inbox).
CREATE TABLE read_cursors (
    user_id    text   NOT NULL,
    inbox      text   NOT NULL,
    conv       text   NOT NULL,
    seq        bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, inbox, conv)
);
