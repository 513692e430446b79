package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley/storage"
)

var _ storage.Deliveries = (*Store)(nil)

// insertDeliveries records deliveries in key order: two nodes recording the
// same ones (a user's phone and laptop, each on its own node) take the same
// keys in the same order, so one waits for the other and they cannot
// deadlock. RETURNING names the rows this statement inserted: the firsts.
const insertDeliveries = `INSERT INTO deliveries (msg_id, user_id, at)
	SELECT d.msg_id, d.user_id, d.at FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS d (msg_id, user_id, at)
	ORDER BY d.msg_id, d.user_id
	ON CONFLICT DO NOTHING
	RETURNING msg_id::text, user_id`

// countDeliveries counts who has each of some messages.
const countDeliveries = `SELECT msg_id::text, count(*) FROM deliveries WHERE msg_id = ANY($1::uuid[]) GROUP BY msg_id`

// RecordDeliveries records deliveries in one statement, then counts those
// of the group messages among them in a second one; see storage.Deliveries.
//
// The counts are read in a statement of their own, after the insert has
// committed, not in the insert (a data-modifying CTE): that statement's
// snapshot would miss a concurrent insert of another node, and two nodes
// recording the last two members of a group at once would both count one
// short. Read after the commit, whichever of them reads later sees both.
func (s *Store) RecordDeliveries(ctx context.Context, ds []storage.Delivery) ([]storage.Delivery, map[string]int, error) {
	valid, dropped, why := storage.UniqueDeliveries(ds)
	var firsts []storage.Delivery
	var counts map[string]int
	if len(valid) > 0 {
		var err error
		if firsts, err = s.insertDeliveries(ctx, valid); err != nil {
			return nil, nil, fmt.Errorf("record deliveries: %w", classify(err))
		}
		if counts, err = s.countDeliveries(ctx, storage.CountedMessages(valid)); err != nil {
			return nil, nil, fmt.Errorf("record deliveries: count: %w", classify(err))
		}
	}
	if dropped > 0 {
		return firsts, counts, fmt.Errorf("record deliveries: %w", storage.DroppedDeliveries(dropped, len(ds), why))
	}
	return firsts, counts, nil
}

// insertDeliveries inserts ds, each key once, and returns those it
// inserted, in the order of ds.
func (s *Store) insertDeliveries(ctx context.Context, ds []storage.Delivery) ([]storage.Delivery, error) {
	ids, users, ats := make([]string, len(ds)), make([]string, len(ds)), make([]time.Time, len(ds))
	now := time.Now()
	for i, d := range ds {
		ids[i], users[i], ats[i] = d.ID, d.User, d.At
		if d.At.IsZero() {
			ats[i] = now
		}
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, insertDeliveries, ids, users, ats)
	if err != nil {
		return nil, err
	}
	inserted := map[storage.DeliveryKey]bool{}
	var k storage.DeliveryKey
	if _, err := pgx.ForEachRow(rows, []any{&k.ID, &k.User}, func() error {
		inserted[k] = true
		return nil
	}); err != nil {
		return nil, err
	}
	var firsts []storage.Delivery
	for _, d := range ds {
		if inserted[d.Key()] {
			firsts = append(firsts, d)
		}
	}
	return firsts, nil
}

// countDeliveries returns how many users have each of ids (none: absent).
func (s *Store) countDeliveries(ctx context.Context, ids []string) (map[string]int, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, countDeliveries, ids)
	if err != nil {
		return nil, err
	}
	counts := make(map[string]int, len(ids))
	var id string
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&id, &n}, func() error {
		counts[id] = n
		return nil
	}); err != nil {
		return nil, err
	}
	return counts, nil
}
