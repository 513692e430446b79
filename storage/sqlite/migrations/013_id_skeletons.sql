-- Ids that look alike: storage/postgres/migrations/013_id_skeletons.sql.
CREATE INDEX users_id_skeleton ON users (replace(replace(replace(replace(replace(id, '0', 'o'), '1', 'l'), 'i', 'l'), 'rn', 'm'), 'vv', 'w'));
