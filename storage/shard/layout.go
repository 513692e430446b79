package shard

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DB is one shard's database, as Prepare and Status use it: a
// *pgxpool.Pool or a *pgx.Conn. Its Parley schema (the store's
// migrations) is in place.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	Begin(ctx context.Context) (pgx.Tx, error)
}

// schema is the layout's own, apart from the data (schema public) that
// the store copier moves: a database's index among the shards, on shard 0
// the map, and on each the outbox of the copies it owes the others.
const schema = `
CREATE SCHEMA IF NOT EXISTS parley_shard;
CREATE TABLE IF NOT EXISTS parley_shard.identity (
    one        boolean     PRIMARY KEY DEFAULT true CHECK (one),
    shard      integer     NOT NULL CHECK (shard >= 0),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS parley_shard.map (
    bucket integer PRIMARY KEY CHECK (bucket >= 0 AND bucket < 4096),
    shard  integer NOT NULL CHECK (shard >= 0)
);
-- The copies this shard owes inboxes on other shards (Message.Owed): the
-- sender's copy of a DM to a recipient here, written in the transaction of
-- the recipient's copy, relayed (Relay) and deleted. lease_until is Unix
-- microseconds.
CREATE TABLE IF NOT EXISTS parley_shard.outbox (
    seq         bigserial PRIMARY KEY,
    inbox       text   NOT NULL,
    id          uuid   NOT NULL,
    sender      text   NOT NULL,
    recipient   text   NOT NULL,
    ts          bigint NOT NULL,
    kind        text   NOT NULL,
    cid         text   NOT NULL,
    data        bytea  NOT NULL,
    conv        text   NOT NULL,
    lease_until bigint NOT NULL DEFAULT 0
);`

// ErrMisplaced: a database is not the shard its place in the list says.
var ErrMisplaced = errors.New("database.shards does not match the databases")

// Prepare checks the databases of a sharded store, dbs[i] being shard i as
// database.shards lists it, and returns the map. On first use it records
// each database's index, and writes the map on shard 0 last (a map marks a
// layout complete): Even over the shards for a new deployment, Single when
// shard 0 already holds inboxes (a single store becoming sharded: none of
// its inboxes moves until a bucket move moves it). Later it refuses a
// list out of order, one that names another deployment's database, and a
// map that names shards the list lacks (ErrMisplaced). A shard listed
// after the map was written joins holding no bucket.
func Prepare(ctx context.Context, dbs []DB) (Map, error) {
	if len(dbs) == 0 || len(dbs) > MaxShards {
		return nil, fmt.Errorf("shard: %d databases; want 1 to %d", len(dbs), MaxShards)
	}
	for i, db := range dbs {
		if _, err := db.Exec(ctx, schema); err != nil {
			return nil, fmt.Errorf("shard %d: layout schema: %w", i, err)
		}
	}
	m, err := ReadMap(ctx, dbs[0])
	if err != nil {
		return nil, err
	}
	for i, db := range dbs {
		id, ok, err := identity(ctx, db)
		switch {
		case err != nil:
			return nil, fmt.Errorf("shard %d: %w", i, err)
		case ok && id != i:
			return nil, fmt.Errorf("%w: database.shards[%d] is shard %d of its deployment (a list out of order, or another deployment's database)",
				ErrMisplaced, i, id)
		case !ok && m != nil && i == 0:
			return nil, fmt.Errorf("%w: database.shards[0] holds a shard map but no identity", ErrMisplaced)
		case !ok:
			if _, err := db.Exec(ctx, "INSERT INTO parley_shard.identity (shard) VALUES ($1) ON CONFLICT DO NOTHING", i); err != nil {
				return nil, fmt.Errorf("shard %d: record identity: %w", i, err)
			}
			// Another node may have recorded it meanwhile: read it back.
			if id, _, err := identity(ctx, db); err != nil || id != i {
				return nil, fmt.Errorf("%w: database.shards[%d] became shard %d (%v)", ErrMisplaced, i, id, err)
			}
		}
	}
	if m != nil {
		if err := m.Validate(len(dbs)); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMisplaced, err)
		}
		return m, nil
	}
	var held bool
	if err := dbs[0].QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM public.inboxes)").Scan(&held); err != nil {
		return nil, fmt.Errorf("shard 0: %w", err)
	}
	m = Even(len(dbs))
	if held {
		m = Single()
	}
	if err := writeMap(ctx, dbs[0], m); err != nil {
		return nil, err
	}
	// Another node may have written its map first: the one stored wins.
	return ReadMap(ctx, dbs[0])
}

func identity(ctx context.Context, db DB) (int, bool, error) {
	var id int
	err := db.QueryRow(ctx, "SELECT shard FROM parley_shard.identity").Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read identity: %w", err)
	}
	return id, true, nil
}

// writeMap stores m on shard 0 unless a map is there already.
func writeMap(ctx context.Context, db DB, m Map) error {
	buckets := make([]int32, len(m))
	shards := make([]int32, len(m))
	for b, s := range m {
		buckets[b], shards[b] = int32(b), int32(s)
	}
	_, err := db.Exec(ctx, `INSERT INTO parley_shard.map (bucket, shard)
		SELECT * FROM unnest($1::integer[], $2::integer[])
		WHERE NOT EXISTS (SELECT 1 FROM parley_shard.map)
		ON CONFLICT DO NOTHING`, buckets, shards)
	if err != nil {
		return fmt.Errorf("shard 0: write map: %w", err)
	}
	return nil
}

// ReadMap reads the map from shard 0: nil when there is none yet.
func ReadMap(ctx context.Context, db DB) (Map, error) {
	rows, err := db.Query(ctx, "SELECT bucket, shard FROM parley_shard.map ORDER BY bucket")
	if err != nil {
		return nil, fmt.Errorf("shard 0: read map: %w", err)
	}
	defer rows.Close()
	m := make(Map, Buckets)
	n := 0
	for rows.Next() {
		var b, s int
		if err := rows.Scan(&b, &s); err != nil {
			return nil, fmt.Errorf("shard 0: read map: %w", err)
		}
		if b < 0 || b >= Buckets {
			return nil, fmt.Errorf("shard 0: map names bucket %d", b)
		}
		m[b] = s
		n++
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("shard 0: read map: %w", err)
	}
	switch n {
	case 0:
		return nil, nil
	case Buckets:
		return m, nil
	}
	return nil, fmt.Errorf("shard 0: the map has %d of %d buckets", n, Buckets)
}

// Shard is one shard as Status reports it.
type Shard struct {
	Index   int
	Buckets int    // buckets the map puts on it
	Ranges  string // which (Map.Ranges)
	// Inboxes and Entries are the planner's estimates (pg_class.reltuples,
	// as of the last ANALYZE or VACUUM): counting a shard's rows exactly
	// would read all of them.
	Inboxes, Entries int64
}

// Status reports each shard: its buckets and its estimated rows.
func Status(ctx context.Context, dbs []DB, m Map) ([]Shard, error) {
	counts := m.Counts(len(dbs))
	out := make([]Shard, len(dbs))
	for i, db := range dbs {
		out[i] = Shard{Index: i, Buckets: counts[i], Ranges: m.Ranges(i)}
		err := db.QueryRow(ctx, `SELECT
			coalesce((SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'public.inboxes'::regclass), 0),
			coalesce((SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'public.entries'::regclass), 0)`).
			Scan(&out[i].Inboxes, &out[i].Entries)
		if err != nil {
			return nil, fmt.Errorf("shard %d: %w", i, err)
		}
	}
	return out, nil
}
