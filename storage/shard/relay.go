package shard

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// Outbox is one shard's outbox, as the relay reads it (postgres.Store).
type Outbox interface {
	ClaimOwed(ctx context.Context, now, leaseUntil time.Time, limit int) ([]storage.OwedCopy, error)
	DeleteOwed(ctx context.Context, seqs []int64) error
}

// Appender stores a relayed copy on the shard of its inbox.
type Appender interface {
	Append(ctx context.Context, m storage.Message) ([]protocol.Entry, bool, error)
}

// Relay turns the copies each shard owes into copies on the shards of
// their inboxes (docs/sharding.md, "A direct message across shards"). A
// copy is appended (idempotently: one already there is a repeat) before its
// outbox row is deleted, so a relay that dies between the two appends
// nothing twice; a copy whose inbox is gone (its user was deleted) is
// dropped.
type Relay struct {
	// Outboxes are the shards' outboxes, by shard index.
	Outboxes []Outbox
	// Shard returns the store of the shard holding inbox.
	Shard func(inbox string) Appender
	// Deliver hands a relayed copy to its inbox's live subscribers.
	// Optional.
	Deliver func(protocol.Entry)
	// Lease is how long a claim holds a shard's copies: past it, a relay
	// that died is replaced. Default 10s.
	Lease time.Duration
	// Batch is the most copies claimed at once. Default 256.
	Batch int
	Log   *slog.Logger
}

func (r *Relay) defaults() {
	if r.Lease <= 0 {
		r.Lease = 10 * time.Second
	}
	if r.Batch <= 0 {
		r.Batch = 256
	}
	if r.Log == nil {
		r.Log = slog.New(slog.DiscardHandler)
	}
}

// Once relays what each shard owes now, one batch per shard, and returns
// how many copies it relayed. An error of one shard is returned after the
// others were tried.
func (r *Relay) Once(ctx context.Context) (int, error) {
	r.defaults()
	n := 0
	var errs []error
	for i, ob := range r.Outboxes {
		k, err := r.shard(ctx, ob)
		n += k
		if err != nil {
			r.Log.Warn("relay owed copies", "shard", i, "error", err)
			errs = append(errs, err)
		}
	}
	return n, errors.Join(errs...)
}

func (r *Relay) shard(ctx context.Context, ob Outbox) (int, error) {
	now := time.Now()
	cs, err := ob.ClaimOwed(ctx, now, now.Add(r.Lease), r.Batch)
	if err != nil || len(cs) == 0 {
		return 0, err
	}
	done := make([]int64, 0, len(cs))
	var failed error
	for _, c := range cs {
		es, dup, err := r.Shard(c.Message.Inboxes[0]).Append(ctx, c.Message)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			// The inbox is gone (a deleted account): nothing to owe.
		case err != nil:
			// Stop here: later copies of the same sender must not overtake
			// this one. The lease runs out and the rest is claimed again.
			failed = err
		case !dup && r.Deliver != nil:
			for _, e := range es {
				r.Deliver(e)
			}
		}
		if failed != nil {
			break
		}
		done = append(done, c.Seq)
	}
	if err := ob.DeleteOwed(ctx, done); err != nil {
		return 0, err
	}
	return len(done), failed
}

// Run relays until ctx ends: at once when told (Kick, after a commit that
// owed copies), and every poll otherwise.
func (r *Relay) Run(ctx context.Context, poll time.Duration, kick <-chan struct{}) {
	r.defaults()
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		for {
			n, err := r.Once(ctx)
			if err != nil || n == 0 {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-kick:
		}
	}
}
