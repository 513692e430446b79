-- Acknowledgements for push: a device of user_id acknowledged message
-- msg_id live (its PUBACK), on whichever node it is connected to. The node
-- that claims the message's push job reads them in the claim and sends
-- those users no push: suppression does not depend on which node saw the
-- acknowledgement.
--
-- A row is written only while the message's push job is queued and is
-- deleted with the job, so the table holds about the acknowledgements of
-- the jobs waiting out their grace period: small, and scanned whole by
-- Prune (on at), which deletes the few a race left behind. The primary key
-- serves the claim, the deletion with the job and ON CONFLICT.
CREATE TABLE push_acks (
    msg_id  uuid        NOT NULL,
    user_id text        NOT NULL,
    at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (msg_id, user_id)
);
