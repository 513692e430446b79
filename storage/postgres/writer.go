package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

type appendReq struct {
	ctx context.Context
	m   storage.Message

	// results, set by the writer before done is closed
	entries []protocol.Entry
	dup     bool
	err     error
	done    chan struct{}
}

// writer owns one shard of inboxes (by the hash of a message's first inbox)
// and commits the appends queued to it in batches.
type writer struct {
	s  *Store
	in chan *appendReq
}

var shardSeed = maphash.MakeSeed()

// Append stores a message in its inboxes; see storage.Messages.
func (s *Store) Append(ctx context.Context, m storage.Message) ([]protocol.Entry, bool, error) {
	if len(m.Inboxes) == 0 {
		return nil, false, errors.New("append: no inboxes")
	}
	req := &appendReq{ctx: ctx, m: m, done: make(chan struct{})}
	w := s.writers[maphash.String(shardSeed, m.Inboxes[0])%uint64(len(s.writers))]
	// The read lock keeps Close from stopping the writers between the check
	// and the send.
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, false, fmt.Errorf("append: %w", storage.ErrClosed)
	}
	select {
	case w.in <- req:
		s.mu.RUnlock()
	case <-ctx.Done():
		s.mu.RUnlock()
		return nil, false, fmt.Errorf("append: %w: %w", storage.ErrUnavailable, ctx.Err())
	}
	// Once queued, the request is always answered: the writer drains its
	// queue before it stops.
	<-req.done
	return req.entries, req.dup, req.err
}

func (w *writer) run() {
	batch := make([]*appendReq, 0, w.s.cfg.MaxBatch)
	for {
		var first *appendReq
		select {
		case first = <-w.in:
		case <-w.s.quit:
			// Answer whatever is still queued, then stop.
			for {
				select {
				case r := <-w.in:
					batch = append(batch[:0], r)
					w.commit(batch)
				default:
					return
				}
			}
		}
		batch = append(batch[:0], first)
	gather:
		for len(batch) < w.s.cfg.MaxBatch {
			select {
			case r := <-w.in:
				batch = append(batch, r)
			default:
				break gather
			}
		}
		w.commit(batch)
	}
}

// commit stores a batch in one transaction and answers every request in it.
func (w *writer) commit(batch []*appendReq) {
	start := time.Now()
	live := make([]*appendReq, 0, len(batch))
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			w.answer(r, nil, false, fmt.Errorf("append: %w: %w", storage.ErrUnavailable, err))
			continue
		}
		live = append(live, r)
	}
	var err error
	for attempt := 0; len(live) > 0; attempt++ {
		live, err = w.tryCommit(live)
		if err == nil || attempt >= 4 || !retryable(err) {
			break
		}
	}
	if len(live) > 0 {
		err = fmt.Errorf("append: %w", classify(err))
		for _, r := range live {
			w.answer(r, nil, false, err)
		}
	}
	if f := w.s.cfg.OnBatch; f != nil {
		f(len(batch), time.Since(start), err)
	}
}

func (w *writer) answer(r *appendReq, es []protocol.Entry, dup bool, err error) {
	r.entries, r.dup, r.err = es, dup, err
	close(r.done)
}

// retryable reports errors after which the same batch may simply run again:
// a deadlock, a serialization failure, or a concurrent insert of the same
// idempotency key (the retry then finds it stored).
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "40P01", "40001", "23505":
			return true
		}
	}
	return false
}

type dedupKey struct{ sender, cid string }

// tryCommit runs one transaction for reqs. It answers the requests it settles
// and returns those still unanswered with the error that stopped it; on
// success it returns none.
func (w *writer) tryCommit(reqs []*appendReq) ([]*appendReq, error) {
	ctx, cancel := context.WithTimeout(context.Background(), w.s.cfg.OpTimeout)
	defer cancel()

	// Which (sender, cid) pairs repeat inside this batch, and which inboxes
	// the batch may touch.
	var senders, cids []string
	first := map[dedupKey]*appendReq{}
	followers := map[*appendReq]*appendReq{}
	touched := map[string]bool{}
	for _, r := range reqs {
		if r.m.Idempotent() {
			k := dedupKey{r.m.From, r.m.Cid}
			if f, ok := first[k]; ok {
				followers[r] = f
				continue
			}
			first[k] = r
			senders, cids = append(senders, k.sender), append(cids, k.cid)
		}
		for _, in := range r.m.Inboxes {
			touched[in] = true
		}
	}
	ids := make([]string, 0, len(touched))
	for id := range touched {
		ids = append(ids, id)
	}
	slices.Sort(ids)

	conn, err := w.s.pool.Acquire(ctx)
	if err != nil {
		return reqs, err
	}
	// A connection left inside a transaction is closed by the pool on release.
	defer conn.Release()
	committed := false
	defer func() {
		if !committed {
			conn.Exec(context.WithoutCancel(ctx), "ROLLBACK") //nolint:errcheck // best effort; the error that matters is returned
		}
	}()

	// Round trip 1: begin, look up stored idempotency keys, and lock the
	// inbox counters in sorted order (no deadlock between writers).
	var b1 pgx.Batch
	b1.Queue("BEGIN")
	if len(senders) > 0 {
		b1.Queue(`SELECT d.sender, d.cid, d.id::text FROM dedup d
			JOIN unnest($1::text[], $2::text[]) AS k(sender, cid) ON d.sender = k.sender AND d.cid = k.cid`, senders, cids)
	}
	b1.Queue("SELECT id, last_seq FROM inboxes WHERE id = ANY($1) ORDER BY id FOR UPDATE", ids)
	br := conn.SendBatch(ctx, &b1)
	if _, err := br.Exec(); err != nil {
		br.Close()
		return reqs, err
	}
	stored := map[dedupKey]string{} // key -> message id stored earlier
	if len(senders) > 0 {
		rows, err := br.Query()
		if err != nil {
			br.Close()
			return reqs, err
		}
		for rows.Next() {
			var k dedupKey
			var id string
			if err := rows.Scan(&k.sender, &k.cid, &id); err != nil {
				rows.Close()
				br.Close()
				return reqs, err
			}
			stored[k] = id
		}
		if err := rows.Err(); err != nil {
			br.Close()
			return reqs, err
		}
	}
	next := map[string]int64{}
	rows, err := br.Query()
	if err != nil {
		br.Close()
		return reqs, err
	}
	for rows.Next() {
		var id string
		var last int64
		if err := rows.Scan(&id, &last); err != nil {
			rows.Close()
			br.Close()
			return reqs, err
		}
		next[id] = last
	}
	if err := rows.Err(); err != nil {
		br.Close()
		return reqs, err
	}
	if err := br.Close(); err != nil {
		return reqs, err
	}
	var missing map[string]bool
	if len(next) < len(ids) {
		missing = map[string]bool{}
		for _, id := range ids {
			if _, ok := next[id]; !ok {
				missing[id] = true
			}
		}
	}

	// The requests that store something new.
	var fresh []*appendReq
	for _, r := range reqs {
		if _, ok := followers[r]; ok {
			continue
		}
		if r.m.Idempotent() {
			if _, ok := stored[dedupKey{r.m.From, r.m.Cid}]; ok {
				continue
			}
		}
		fresh = append(fresh, r)
	}

	// Number the new entries.
	n := 0
	for _, r := range fresh {
		n += len(r.m.Inboxes)
	}
	var (
		eInbox, eID, eSender, eTo, eKind, eCid, eConv []string
		eSeq, eTS                                     []int64
		eData                                         [][]byte
		dSender, dCid, dID                            []string
	)
	eInbox, eID, eSender, eTo = make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
	eKind, eCid, eSeq, eTS, eData = make([]string, 0, n), make([]string, 0, n), make([]int64, 0, n), make([]int64, 0, n), make([][]byte, 0, n)
	eConv = make([]string, 0, n)
	results := make(map[*appendReq][]protocol.Entry, len(fresh))
	var failed []*appendReq
	for _, r := range fresh {
		ok := true
		for _, in := range r.m.Inboxes {
			if missing[in] {
				ok = false
			}
		}
		if !ok {
			failed = append(failed, r)
			continue
		}
		es := make([]protocol.Entry, len(r.m.Inboxes))
		for i, in := range r.m.Inboxes {
			next[in]++
			es[i] = protocol.Entry{ID: r.m.ID, Inbox: in, Seq: next[in], From: r.m.From, To: r.m.To,
				TS: r.m.TS, Type: r.m.Type, Cid: r.m.Cid, Data: r.m.Data}
			eInbox, eSeq, eID, eSender = append(eInbox, in), append(eSeq, next[in]), append(eID, r.m.ID), append(eSender, r.m.From)
			eTo, eTS, eKind, eCid, eData = append(eTo, r.m.To), append(eTS, r.m.TS), append(eKind, r.m.Type), append(eCid, r.m.Cid), append(eData, nonNil(r.m.Data))
			eConv = append(eConv, storage.ConvOf(&r.m, in))
		}
		results[r] = es
		if r.m.Idempotent() {
			dSender, dCid, dID = append(dSender, r.m.From), append(dCid, r.m.Cid), append(dID, r.m.ID)
		}
	}
	// Round trip 2: counters, entries, idempotency keys, commit.
	var b2 pgx.Batch
	if len(eInbox) > 0 {
		ids, seqs := make([]string, 0, len(next)), make([]int64, 0, len(next))
		for id, seq := range next {
			ids, seqs = append(ids, id), append(seqs, seq)
		}
		b2.Queue(`UPDATE inboxes SET last_seq = d.seq FROM unnest($1::text[], $2::bigint[]) AS d(id, seq)
			WHERE inboxes.id = d.id AND inboxes.last_seq <> d.seq`, ids, seqs)
		b2.Queue(`INSERT INTO entries (inbox, seq, id, sender, recipient, ts, kind, cid, data, conv)
			SELECT * FROM unnest($1::text[], $2::bigint[], $3::uuid[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::text[], $9::bytea[], $10::text[])`,
			eInbox, eSeq, eID, eSender, eTo, eTS, eKind, eCid, eData, eConv)
		if len(dSender) > 0 {
			b2.Queue(`INSERT INTO dedup (sender, cid, id) SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[])`, dSender, dCid, dID)
		}
		if cu, cp, cts := contactRows(fresh, results); len(cu) > 0 {
			// Sorted rows take their locks in one order in every writer.
			b2.Queue(`INSERT INTO contacts (user_id, peer, last_ts) SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
				ON CONFLICT DO NOTHING`, cu, cp, cts)
		}
	}
	if w.s.cfg.PushJobs {
		queuePushJobs(&b2, fresh, results)
	}
	b2.Queue("COMMIT")
	if err := conn.SendBatch(ctx, &b2).Close(); err != nil {
		return reqs, err
	}
	if conn.Conn().PgConn().TxStatus() != 'I' {
		// COMMIT of a failed transaction answers ROLLBACK without an error.
		return reqs, errors.New("commit: transaction rolled back")
	}
	committed = true

	// Answer: new entries, inboxes that do not exist, and duplicates (read
	// back after the commit; the first copy may have come in this batch).
	for r, es := range results {
		w.answer(r, es, false, nil)
	}
	for _, r := range failed {
		w.answer(r, nil, false, fmt.Errorf("append: inbox: %w", storage.ErrNotFound))
	}
	for _, r := range reqs {
		if _, ok := results[r]; ok || slices.Contains(failed, r) {
			continue
		}
		var id string
		if f, ok := followers[r]; ok {
			if es, ok := results[f]; ok {
				w.answer(r, es, true, nil)
				continue
			}
			id = stored[dedupKey{f.m.From, f.m.Cid}]
		} else {
			id = stored[dedupKey{r.m.From, r.m.Cid}]
		}
		if id == "" { // the first of the pair failed: so does its repeat
			w.answer(r, nil, false, fmt.Errorf("append: inbox: %w", storage.ErrNotFound))
			continue
		}
		es, err := w.s.entriesByID(ctx, id)
		if err != nil {
			w.answer(r, nil, false, fmt.Errorf("append: read duplicate: %w", classify(err)))
			continue
		}
		w.answer(r, es, true, nil)
	}
	return nil, nil
}

// entriesByID returns the stored copies of one message, the recipient's
// (the copy whose inbox is not the sender's own) first.
func (s *Store) entriesByID(ctx context.Context, id string) ([]protocol.Entry, error) {
	rows, err := s.pool.Query(ctx, "SELECT "+entryColumns+" FROM entries WHERE id = $1 ORDER BY (inbox = 'u/' || sender), inbox", id)
	if err != nil {
		return nil, err
	}
	return scanEntries(rows)
}

// contactRows returns the contacts pairs (both ways) of the stored direct
// messages of a batch, sorted and without repeats.
func contactRows(fresh []*appendReq, stored map[*appendReq][]protocol.Entry) (users, peers []string, ts []int64) {
	type pair struct{ u, p string }
	seen := map[pair]int64{}
	for _, r := range fresh {
		if _, ok := stored[r]; !ok {
			continue
		}
		if a, b, ok := storage.ContactPair(&r.m); ok {
			seen[pair{a, b}], seen[pair{b, a}] = r.m.TS, r.m.TS
		}
	}
	keys := make([]pair, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y pair) int {
		if c := strings.Compare(x.u, y.u); c != 0 {
			return c
		}
		return strings.Compare(x.p, y.p)
	})
	for _, k := range keys {
		users, peers, ts = append(users, k.u), append(peers, k.p), append(ts, seen[k])
	}
	return users, peers, ts
}

// nonNil keeps an empty Data from being sent as NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
