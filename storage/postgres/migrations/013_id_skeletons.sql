-- Ids that look alike: an index on the skeleton of each user id
-- (protocol.IDSkeleton: 0→o, 1→l, i→l, rn→m, vv→w, in that order), so that
-- a display name that reads as another user's id is found in one lookup
-- (UsersLike) and refused. The expression must stay the one in
-- storage/postgres (skeletonExpr) for the index to be used.
CREATE INDEX users_id_skeleton ON users ((replace(replace(replace(replace(replace(id, '0', 'o'), '1', 'l'), 'i', 'l'), 'rn', 'm'), 'vv', 'w')));
