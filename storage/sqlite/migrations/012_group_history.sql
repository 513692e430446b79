-- Group history: the columns of the Postgres migration
-- (storage/postgres/migrations/012_group_history.sql) in SQLite types.
--
-- groups.history is 'join' (a member added later reads from its own
-- member_added entry on) or 'full' (every member reads everything).
-- Existing groups get 'join'; their existing members keep what they had,
-- since their rows get from_seq 0.
ALTER TABLE groups ADD COLUMN history TEXT NOT NULL DEFAULT 'join'
    CONSTRAINT groups_history CHECK (history IN ('join', 'full'));

-- The first seq of the group's inbox the member reads: 0 (from the start)
-- for the founding members, the inbox's last_seq + 1 when a member is
-- added (again). A 'full' group reads it as 0.
ALTER TABLE group_members ADD COLUMN from_seq INTEGER NOT NULL DEFAULT 0;
