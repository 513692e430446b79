package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley/storage"
)

// The outbox of a sharded store (docs/sharding.md) is parley_shard.outbox,
// created with the shard layout (storage/shard): the copies this shard owes
// inboxes on other shards, written by Append in the transaction of the
// message (Message.Owed).

// ClaimOwed leases, until leaseUntil, up to limit of the oldest copies this
// shard owes, and returns them in the order they were owed. One relay at a
// time holds a shard's copies: while any lease is running (another node's
// relay, or this one's last claim) it returns none, so that the copies of
// one sender reach its inbox in the order it sent them; a lease that ran
// out (a crashed relay) is claimed again.
func (s *Store) ClaimOwed(ctx context.Context, now, leaseUntil time.Time, limit int) ([]storage.OwedCopy, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var out []storage.OwedCopy
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Claims take turns: two at once could each see no running lease.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext('parley_shard.outbox'))"); err != nil {
			return err
		}
		var busy bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM parley_shard.outbox WHERE lease_until > $1)",
			now.UnixMicro()).Scan(&busy); err != nil || busy {
			return err
		}
		rows, err := tx.Query(ctx, `UPDATE parley_shard.outbox SET lease_until = $1
			WHERE seq IN (SELECT seq FROM parley_shard.outbox ORDER BY seq LIMIT $2)
			RETURNING seq, inbox, id::text, sender, recipient, ts, kind, cid, data, conv`, leaseUntil.UnixMicro(), limit)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.OwedCopy, error) {
			var c storage.OwedCopy
			var inbox string
			m := &c.Message
			err := r.Scan(&c.Seq, &inbox, &m.ID, &m.From, &m.To, &m.TS, &m.Type, &m.Cid, &m.Data, &m.Conv)
			m.Inboxes, m.Copy = []string{inbox}, true
			return c, err
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("claim owed copies: %w", classify(err))
	}
	storage.SortOwed(out)
	return out, nil
}

// DeleteOwed removes relayed copies from the outbox.
func (s *Store) DeleteOwed(ctx context.Context, seqs []int64) error {
	if len(seqs) == 0 {
		return nil
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	if _, err := s.pool.Exec(ctx, "DELETE FROM parley_shard.outbox WHERE seq = ANY($1)", seqs); err != nil {
		return fmt.Errorf("delete owed copies: %w", classify(err))
	}
	return nil
}

// CountOwed returns how many copies the shard owes and the ts (Unix ms) of
// the oldest, 0 if none: for metrics and `parley shards status`.
func (s *Store) CountOwed(ctx context.Context) (n, oldestTS int64, err error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	err = s.pool.QueryRow(ctx, "SELECT count(*), coalesce(min(ts), 0) FROM parley_shard.outbox").Scan(&n, &oldestTS)
	if err != nil {
		return 0, 0, fmt.Errorf("count owed copies: %w", classify(err))
	}
	return n, oldestTS, nil
}
