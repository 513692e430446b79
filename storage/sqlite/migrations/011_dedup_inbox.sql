-- Idempotency keys scoped to the inbox a message is addressed to, (sender,
-- inbox, cid): storage/postgres/migrations/011_dedup_inbox.sql in SQLite
-- types, which says why and how existing keys get their inbox.
--
-- A table's primary key cannot be altered in SQLite: the table is rebuilt
-- (a new table, the rows copied, the old one dropped, the new one renamed).
-- A key none of whose message's copies is left is dropped.
CREATE TABLE dedup_next (
    sender TEXT NOT NULL,
    inbox  TEXT NOT NULL,
    cid    TEXT NOT NULL,
    id     TEXT NOT NULL,
    PRIMARY KEY (sender, inbox, cid)
) STRICT, WITHOUT ROWID;

INSERT INTO dedup_next (sender, inbox, cid, id)
SELECT sender, inbox, cid, id FROM (
    SELECT d.sender, d.cid, d.id, (
        SELECT CASE WHEN substr(e.inbox, 1, 2) = 'g/' THEN e.inbox ELSE 'u/' || e.recipient END
        FROM entries e
        WHERE e.id = d.id
        ORDER BY substr(e.inbox, 1, 2) = 'g/' DESC
        LIMIT 1
    ) AS inbox
    FROM dedup d
)
WHERE inbox IS NOT NULL;

DROP TABLE dedup;
ALTER TABLE dedup_next RENAME TO dedup;
