-- Idempotency keys scoped to the inbox a message is addressed to: a key is
-- (sender, inbox, cid), not (sender, cid), so that a cid a client reuses
-- for another recipient or group stores another message instead of
-- answering with the first one as its duplicate. inbox is the first inbox
-- of the message (storage.Message.DedupInbox): the recipient's u/{user},
-- or the group's g/{group}; never the sender's own copy.
--
-- The table is rebuilt rather than altered in place. A migration runs in
-- one transaction (no CREATE INDEX CONCURRENTLY), so dedup stays locked
-- until the commit either way; copying it once into a new table and
-- building the key after the copy is one pass, where adding the column
-- and updating every row would write each row twice, maintain the old key
-- on the way and leave half the table dead. The table holds the keys of
-- maintenance.dedup_age (30 days by default), not the whole history.
--
-- An existing key takes its inbox from its message's copies (entries_id
-- finds them; every copy carries the message's recipient): the group's
-- inbox for a group message, else the recipient's user inbox, which is
-- right even where only the sender's copy is left (a deleted recipient).
-- A key none of whose copies is left is dropped: a retry could find
-- nothing to answer with, and Prune deletes such keys anyway.
LOCK TABLE dedup IN ACCESS EXCLUSIVE MODE;

CREATE TABLE dedup_next (
    sender text NOT NULL,
    inbox  text NOT NULL,
    cid    text NOT NULL,
    id     uuid NOT NULL
);

INSERT INTO dedup_next (sender, inbox, cid, id)
SELECT d.sender, k.inbox, d.cid, d.id
FROM dedup d
CROSS JOIN LATERAL (
    SELECT CASE WHEN substr(e.inbox, 1, 2) = 'g/' THEN e.inbox ELSE 'u/' || e.recipient END AS inbox
    FROM entries e
    WHERE e.id = d.id
    ORDER BY substr(e.inbox, 1, 2) = 'g/' DESC
    LIMIT 1
) k;

DROP TABLE dedup;
ALTER TABLE dedup_next RENAME TO dedup;
ALTER TABLE dedup ADD CONSTRAINT dedup_pkey PRIMARY KEY (sender, inbox, cid);
