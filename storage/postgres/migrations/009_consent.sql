-- Consent: whom each user blocked, the user's own contact list (who
-- "contacts" means in its presence privacy and group-add settings), and who
-- may add the user to groups. The contacts table of 002_groups.sql is
-- something else: the partners of a user's direct conversations.
--
-- Both lists name live users; DeleteUser deletes a deleted user's lists and
-- its place in others'.

CREATE TABLE blocks (
    user_id    text        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    peer       text        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, peer)
);

CREATE TABLE contact_list (
    user_id    text        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    peer       text        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, peer)
);

-- A row exists once a user has chosen a setting; without one, everyone may
-- add the user to groups.
CREATE TABLE consent (
    user_id    text NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    group_adds text NOT NULL DEFAULT 'everyone' CHECK (group_adds IN ('everyone', 'contacts', 'nobody'))
);
