package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/parleychat/parley/storage"
)

// pruneStep is the most rows one write of Prune deletes: each step is a
// write of its own, queued with appends, so a large prune never holds the
// one writer for long.
const pruneStep = 1000

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
			SELECT hash FROM tokens WHERE expires_at < ? LIMIT ?)`, r.Now.UnixMicro())
		if err != nil {
			return p, fmt.Errorf("prune tokens: %w", err)
		}
	}
	if r.Dedup > 0 {
		// A key is as old as its message (entries_id finds it); a key
		// whose entries are gone is pruned with them. dedup has no rowid:
		// rows are picked by their key.
		p.DedupKeys, err = s.pruneSteps(ctx, `DELETE FROM dedup WHERE (sender, inbox, cid) IN (
			SELECT d.sender, d.inbox, d.cid FROM dedup d
			WHERE NOT EXISTS (SELECT 1 FROM entries e WHERE e.id = d.id AND e.ts >= ?)
			LIMIT ?)`, r.Now.Add(-r.Dedup).UnixMilli())
		if err != nil {
			return p, fmt.Errorf("prune idempotency keys: %w", err)
		}
	}
	if r.Cursors > 0 {
		p.Cursors, err = s.pruneSteps(ctx, `DELETE FROM cursors WHERE client_id IN (
			SELECT client_id FROM cursors GROUP BY client_id HAVING max(updated_at) < ? LIMIT ?)`,
			r.Now.Add(-r.Cursors).UnixMicro())
		if err != nil {
			return p, fmt.Errorf("prune cursors: %w", err)
		}
	}
	if r.PushAcks > 0 {
		p.PushAcks, err = s.pruneSteps(ctx, `DELETE FROM push_acks WHERE (msg_id, user_id) IN (
			SELECT msg_id, user_id FROM push_acks WHERE at < ? LIMIT ?)`, r.Now.Add(-r.PushAcks).UnixMicro())
		if err != nil {
			return p, fmt.Errorf("prune push acknowledgements: %w", err)
		}
	}
	if r.Deliveries > 0 {
		p.Deliveries, err = s.pruneSteps(ctx, `DELETE FROM deliveries WHERE (msg_id, user_id) IN (
			SELECT msg_id, user_id FROM deliveries WHERE at < ? LIMIT ?)`, r.Now.Add(-r.Deliveries).UnixMicro())
		if err != nil {
			return p, fmt.Errorf("prune deliveries: %w", err)
		}
	}
	return p, nil
}

// pruneSteps runs query (a DELETE of at most the second argument's rows
// matching the first) as writes until one deletes nothing, and returns how
// many rows it deleted in all.
func (s *Store) pruneSteps(ctx context.Context, query string, arg any) (int64, error) {
	var n int64
	for {
		var step int64
		err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, query, arg, pruneStep)
			if err != nil {
				return err
			}
			step, err = res.RowsAffected()
			return err
		})
		if err != nil {
			return n, classify(err)
		}
		n += step
		if step == 0 {
			return n, nil
		}
	}
}
