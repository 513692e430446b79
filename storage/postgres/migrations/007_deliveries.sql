-- Deliveries: a device of user_id has message msg_id (it acknowledged it
-- live, its PUBACK, on whichever node it is connected to). Delivered
-- receipts are made of these rows, not of one node's memory: a receipt is
-- due for the row an INSERT ... ON CONFLICT DO NOTHING made (the first
-- device of the user anywhere), and a group message's receipt counts its
-- rows (the members who have it, on every node).
--
-- One row per message and recipient (per member who acknowledged, for a
-- group message), kept for days (Retention.Deliveries): Prune deletes by
-- at, hence deliveries_at. The primary key serves ON CONFLICT and the
-- counts.
CREATE TABLE deliveries (
    msg_id  uuid        NOT NULL,
    user_id text        NOT NULL,
    at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (msg_id, user_id)
);
CREATE INDEX deliveries_at ON deliveries (at);
