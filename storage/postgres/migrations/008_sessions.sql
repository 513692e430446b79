-- Sessions and account lifecycle.
--
-- A token's last use: when, from which address, with which HTTP
-- User-Agent or MQTT client id. Written at most once a minute per token and
-- node (auth.Service.NoteUse); each write slides expires_at to the earlier
-- of the use plus auth.token_ttl and created_at plus auth.token_max.
ALTER TABLE tokens ADD COLUMN last_used_at timestamptz;
UPDATE tokens SET last_used_at = created_at;
ALTER TABLE tokens ALTER COLUMN last_used_at SET NOT NULL, ALTER COLUMN last_used_at SET DEFAULT now();
ALTER TABLE tokens ADD COLUMN last_addr   text NOT NULL DEFAULT '';
ALTER TABLE tokens ADD COLUMN last_agent  text NOT NULL DEFAULT '';
ALTER TABLE tokens ADD COLUMN last_client text NOT NULL DEFAULT '';

-- A deleted account keeps its row as a tombstone: deleted_at set, the name
-- 'Deleted user', no password. Its id is never given to anyone else, and
-- the messages it sent, which stay in other users' inboxes, stay
-- attributed to it.
ALTER TABLE users ADD COLUMN deleted_at timestamptz;

-- A deleted user cannot become a group member again: the foreign key on
-- group_members.user_id still finds the tombstone, so this trigger refuses
-- the membership as the foreign key refuses an unknown user (23503, which
-- the store reports as ErrNotFound).
CREATE FUNCTION parley_refuse_deleted_member() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.removed_seq IS NULL AND EXISTS (SELECT 1 FROM users WHERE id = NEW.user_id AND deleted_at IS NOT NULL) THEN
        RAISE EXCEPTION 'user % is deleted', NEW.user_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER group_members_live_user BEFORE INSERT OR UPDATE OF removed_seq ON group_members
    FOR EACH ROW EXECUTE FUNCTION parley_refuse_deleted_member();
