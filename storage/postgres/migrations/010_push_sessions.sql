-- A push token is bound to the session that registered it: session is the
-- hash of that access token (tokens.hash). Revoking the token (signing out,
-- ending the session, a password change, deleting the account) or pruning
-- it once expired deletes the push tokens it registered, in the same
-- statement, so that a signed-out device gets no more notifications.
--
-- Rows registered before this migration have no session (NULL): they stay
-- bound to their user only, and another user cannot take them over while
-- the account exists (PutPushDevice).
ALTER TABLE push_devices ADD COLUMN session bytea REFERENCES tokens (hash) ON DELETE CASCADE;
-- For the cascade: deleting a token finds its push tokens by session.
CREATE INDEX push_devices_session ON push_devices (session);
-- For the cap per user (push.max_devices): a user's tokens by age; it
-- replaces push_devices_user, whose column it starts with.
CREATE INDEX push_devices_user_updated ON push_devices (user_id, updated_at);
DROP INDEX push_devices_user;
