package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/parleychat/parley/storage"
)

var _ storage.Deliveries = (*Store)(nil)

// RecordDeliveries records deliveries and counts those of group messages in
// one write; see storage.Deliveries. The one writer makes the counts exact:
// no other write comes between the inserts and the counts.
func (s *Store) RecordDeliveries(ctx context.Context, ds []storage.Delivery) ([]storage.Delivery, map[string]int, error) {
	valid, dropped, why := storage.UniqueDeliveries(ds)
	var firsts []storage.Delivery
	var counts map[string]int
	if len(valid) > 0 {
		err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
			// The writer may run an op again (after isolating a failed
			// batch): start from nothing.
			firsts, counts = nil, nil
			ins, err := tx.PrepareContext(ctx, "INSERT INTO deliveries (msg_id, user_id, at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")
			if err != nil {
				return err
			}
			defer ins.Close()
			now := time.Now().UnixMicro()
			for _, d := range valid {
				at := now
				if !d.At.IsZero() {
					at = d.At.UnixMicro()
				}
				res, err := ins.ExecContext(ctx, d.ID, d.User, at)
				if err != nil {
					return err
				}
				if n, err := res.RowsAffected(); err != nil {
					return err
				} else if n == 1 {
					firsts = append(firsts, d)
				}
			}
			ids := storage.CountedMessages(valid)
			if len(ids) == 0 {
				return nil
			}
			cnt, err := tx.PrepareContext(ctx, "SELECT count(*) FROM deliveries WHERE msg_id = ?")
			if err != nil {
				return err
			}
			defer cnt.Close()
			counts = make(map[string]int, len(ids))
			for _, id := range ids {
				var n int
				if err := cnt.QueryRowContext(ctx, id).Scan(&n); err != nil {
					return err
				}
				counts[id] = n
			}
			return nil
		})
		if err != nil {
			return nil, nil, fmt.Errorf("record deliveries: %w", classify(err))
		}
	}
	if dropped > 0 {
		return firsts, counts, fmt.Errorf("record deliveries: %w", storage.DroppedDeliveries(dropped, len(ds), why))
	}
	return firsts, counts, nil
}
