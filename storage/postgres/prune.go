package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/parleychat/parley/storage"
)

// pruneStep is the most rows one statement of Prune deletes: small enough
// that no statement holds its locks (or grows the WAL) for long.
const pruneStep = 5000

var _ storage.Maintenance = (*Store)(nil)

// Prune deletes expired tokens, old idempotency keys, the cursors of
// devices gone for good, left-over push acknowledgements and old
// deliveries; see storage.Maintenance.
func (s *Store) Prune(ctx context.Context, r storage.Retention) (storage.Pruned, error) {
	if r.Now.IsZero() {
		r.Now = time.Now()
	}
	var p storage.Pruned
	var err error
	if r.Tokens {
		p.Tokens, err = s.pruneSteps(ctx, `DELETE FROM tokens WHERE hash IN (
			SELECT hash FROM tokens WHERE expires_at < $1 LIMIT $2)`, r.Now)
		if err != nil {
			return p, fmt.Errorf("prune tokens: %w", err)
		}
	}
	if r.Dedup > 0 {
		// A key is as old as its message (entries_id finds it); a key
		// whose entries are gone is pruned with them.
		p.DedupKeys, err = s.pruneSteps(ctx, `DELETE FROM dedup WHERE (sender, inbox, cid) IN (
			SELECT d.sender, d.inbox, d.cid FROM dedup d
			WHERE NOT EXISTS (SELECT 1 FROM entries e WHERE e.id = d.id AND e.ts >= $1)
			LIMIT $2)`, r.Now.Add(-r.Dedup).UnixMilli())
		if err != nil {
			return p, fmt.Errorf("prune idempotency keys: %w", err)
		}
	}
	if r.Cursors > 0 {
		p.Cursors, err = s.pruneSteps(ctx, `DELETE FROM cursors WHERE client_id IN (
			SELECT client_id FROM cursors GROUP BY client_id HAVING max(updated_at) < $1 LIMIT $2)`,
			r.Now.Add(-r.Cursors))
		if err != nil {
			return p, fmt.Errorf("prune cursors: %w", err)
		}
	}
	if r.PushAcks > 0 {
		// push_acks holds about the acknowledgements of the queued push
		// jobs (see 006_push_acks.sql): scanning it is cheap.
		p.PushAcks, err = s.pruneSteps(ctx, `DELETE FROM push_acks WHERE (msg_id, user_id) IN (
			SELECT msg_id, user_id FROM push_acks WHERE at < $1 LIMIT $2)`, r.Now.Add(-r.PushAcks))
		if err != nil {
			return p, fmt.Errorf("prune push acknowledgements: %w", err)
		}
	}
	if r.Deliveries > 0 {
		// deliveries_at finds the old rows (see 007_deliveries.sql).
		p.Deliveries, err = s.pruneSteps(ctx, `DELETE FROM deliveries WHERE (msg_id, user_id) IN (
			SELECT msg_id, user_id FROM deliveries WHERE at < $1 LIMIT $2)`, r.Now.Add(-r.Deliveries))
		if err != nil {
			return p, fmt.Errorf("prune deliveries: %w", err)
		}
	}
	return p, nil
}

// pruneSteps runs query (a DELETE of at most $2 rows matching $1) until it
// deletes nothing, and returns how many rows it deleted in all.
func (s *Store) pruneSteps(ctx context.Context, query string, arg any) (int64, error) {
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
		}
		octx, cancel := s.opCtx(ctx)
		tag, err := s.pool.Exec(octx, query, arg, pruneStep)
		cancel()
		if err != nil {
			return n, classify(err)
		}
		n += tag.RowsAffected()
		if tag.RowsAffected() == 0 {
			return n, nil
		}
	}
}
