package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// A request is one write queued for the writer: an append, or any other
// write (op). Each is answered once, after the transaction that carried it
// committed or failed.
type request struct {
	ctx context.Context
	m   *storage.Message                            // an append, or
	op  func(ctx context.Context, tx *sql.Tx) error // another write

	// results, set by the writer before done is closed
	entries []protocol.Entry
	dup     bool
	err     error
	done    chan struct{}
}

func (r *request) answer(res result) {
	r.entries, r.dup, r.err = res.entries, res.dup, res.err
	close(r.done)
}

// result is the answer to one request. Its err concerns that request alone.
type result struct {
	entries []protocol.Entry
	dup     bool
	err     error
}

// Append stores a message in its inboxes; see storage.Messages. It queues the
// message for the writer and returns once the transaction that carries it has
// committed (and is synced to disk) or failed.
func (s *Store) Append(ctx context.Context, m storage.Message) ([]protocol.Entry, bool, error) {
	if len(m.Inboxes) == 0 {
		return nil, false, errors.New("append: no inboxes")
	}
	r := &request{ctx: ctx, m: &m, done: make(chan struct{})}
	if err := s.submit(ctx, r); err != nil {
		return nil, false, fmt.Errorf("append: %w", err)
	}
	if r.err != nil {
		return nil, false, fmt.Errorf("append: %w", r.err)
	}
	return r.entries, r.dup, nil
}

// write runs op in a transaction of the writer, between or alongside appends,
// and returns its error. Every write goes through the writer: SQLite has one
// write lock per database, and a second writing connection would only wait
// for it (polling, under busy_timeout) instead of queueing fairly.
func (s *Store) write(ctx context.Context, op func(ctx context.Context, tx *sql.Tx) error) error {
	r := &request{ctx: ctx, op: op, done: make(chan struct{})}
	if err := s.submit(ctx, r); err != nil {
		return err
	}
	return r.err
}

// submit queues r and waits for its answer.
func (s *Store) submit(ctx context.Context, r *request) error {
	// The read lock keeps Close from stopping the writer between the check
	// and the send.
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return storage.ErrClosed
	}
	select {
	case s.in <- r:
		s.mu.RUnlock()
	case <-ctx.Done():
		s.mu.RUnlock()
		return fmt.Errorf("%w: %w", storage.ErrUnavailable, ctx.Err())
	}
	// Once queued, a request is always answered, even after ctx ends: the
	// writer drains its queue before it stops, and the caller must not
	// report a failure for a write that may yet commit.
	<-r.done
	return nil
}

// runWriter is the writer goroutine: it takes everything queued, up to
// MaxBatch, commits it in one transaction and answers each request. While one
// transaction syncs, the next batch gathers, so the cost of an fsync is
// shared by every write that arrived meanwhile.
func (s *Store) runWriter() {
	batch := make([]*request, 0, s.cfg.MaxBatch)
	for {
		var first *request
		select {
		case first = <-s.in:
		case <-s.quit:
			// Close stopped new writes from being queued: answer what is
			// left, then stop.
			for {
				batch = s.gather(batch[:0])
				if len(batch) == 0 {
					return
				}
				s.commit(batch)
			}
		}
		batch = s.gather(append(batch[:0], first))
		s.commit(batch)
	}
}

// gather adds queued requests to batch, without waiting, up to MaxBatch.
func (s *Store) gather(batch []*request) []*request {
	for len(batch) < s.cfg.MaxBatch {
		select {
		case r := <-s.in:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// commit stores a batch in one transaction and answers every request in it.
// OnBatch hears of the batch before any of its callers returns.
func (s *Store) commit(batch []*request) {
	start := time.Now()
	results := make([]result, len(batch))
	var live []int // indexes of the requests still wanted
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			results[i].err = fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
			continue
		}
		live = append(live, i)
	}
	var err error
	if len(live) > 0 {
		err = s.tryCommit(batch, live, results)
	}
	switch {
	case err == nil:
	case len(live) > 1 && !unavailable(err):
		// Something in one request broke the transaction (a constraint, a
		// value too big): commit each request alone, so that it fails only
		// itself. Errors of the database (I/O, a full disk, a lock held
		// too long) fail the whole batch: retrying would only repeat them.
		s.log.Warn("batch failed, retrying its writes one by one", "size", len(live), "err", err)
		for _, i := range live {
			if err := s.tryCommit(batch, []int{i}, results); err != nil {
				results[i] = result{err: classifyWrite(err)}
			}
		}
	default:
		s.log.Warn("batch failed", "size", len(live), "err", err)
		for _, i := range live {
			results[i] = result{err: classifyWrite(err)}
		}
	}
	if f := s.cfg.OnBatch; f != nil {
		f(len(batch), time.Since(start), err)
	}
	for i, r := range batch {
		r.answer(results[i])
	}
}

// classifyWrite classifies the error of a failed write transaction. Unlike
// classify it maps no constraint to ErrExists: in an append that is a broken
// invariant, not a taken id.
func classifyWrite(err error) error {
	if unavailable(err) {
		return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
	}
	return err
}

// tryCommit runs one transaction for the requests batch[i], i in idx. On
// success it sets their results; on error it sets none and returns the error
// that stopped it (the transaction is rolled back).
func (s *Store) tryCommit(batch []*request, idx []int, results []result) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.OpTimeout)
	defer cancel()
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	b, err := newBatch(ctx, tx, s.cfg.PushJobs)
	if err != nil {
		return err
	}
	defer b.close()

	out := make([]result, len(idx))
	for j, i := range idx {
		if r := batch[i]; r.op != nil {
			out[j], err = b.runOp(r.op)
		} else {
			out[j], err = b.append(r.m)
		}
		if err != nil {
			return err
		}
	}
	if err := b.flush(); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	for j, i := range idx {
		results[i] = out[j]
	}
	return nil
}

// batch is the state of one write transaction.
type batch struct {
	ctx context.Context
	tx  *sql.Tx

	selDedup, insDedup, selInbox, updInbox, insEntry, selByID, insContact *sql.Stmt
	insPushJob                                                            *sql.Stmt // nil unless Config.PushJobs

	// last holds the inbox counters this transaction has read, with the
	// seqs it has given out since; dirty are those to write back. Appends
	// number entries here and flush writes the counters once per batch,
	// not once per entry.
	last    map[string]int64
	dirty   map[string]bool
	missing map[string]bool // inboxes found not to exist
}

func newBatch(ctx context.Context, tx *sql.Tx, pushJobs bool) (*batch, error) {
	b := &batch{ctx: ctx, tx: tx, last: map[string]int64{}, dirty: map[string]bool{}, missing: map[string]bool{}}
	if pushJobs {
		st, err := tx.PrepareContext(ctx, insPushJobSQL)
		if err != nil {
			return nil, err
		}
		b.insPushJob = st
	}
	for _, p := range []struct {
		stmt  **sql.Stmt
		query string
	}{
		{&b.selDedup, "SELECT id FROM dedup WHERE sender = ? AND cid = ?"},
		{&b.insDedup, "INSERT INTO dedup (sender, cid, id) VALUES (?, ?, ?)"},
		{&b.insContact, "INSERT INTO contacts (user_id, peer, last_ts) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"},
		{&b.selInbox, "SELECT last_seq FROM inboxes WHERE id = ?"},
		{&b.updInbox, "UPDATE inboxes SET last_seq = ? WHERE id = ?"},
		{&b.insEntry, "INSERT INTO entries (" + entryColumns + ", conv) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"},
		{&b.selByID, "SELECT " + entryColumns + " FROM entries WHERE id = ?"},
	} {
		st, err := tx.PrepareContext(ctx, p.query)
		if err != nil {
			b.close()
			return nil, err
		}
		*p.stmt = st
	}
	return b, nil
}

func (b *batch) close() {
	for _, st := range []*sql.Stmt{b.selDedup, b.insDedup, b.selInbox, b.updInbox, b.insEntry, b.selByID, b.insContact, b.insPushJob} {
		if st != nil {
			st.Close()
		}
	}
}

// append stores one message. A result error (an inbox that does not exist)
// concerns the message alone and leaves nothing behind; a returned error
// fails the transaction.
func (b *batch) append(m *storage.Message) (result, error) {
	// 1. Idempotency. The lookup runs inside the transaction, so it also
	// finds a first copy stored earlier in this same batch.
	if m.Idempotent() {
		var id string
		err := b.selDedup.QueryRowContext(b.ctx, m.From, m.Cid).Scan(&id)
		if err == nil {
			es, err := b.entriesByID(id, m.Inboxes)
			if err != nil {
				return result{}, err
			}
			return result{entries: es, dup: true}, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return result{}, err
		}
	}
	// 2. Every inbox must exist before anything is written.
	for _, in := range m.Inboxes {
		ok, err := b.load(in)
		if err != nil {
			return result{}, err
		}
		if !ok {
			return result{err: fmt.Errorf("inbox %s: %w", in, storage.ErrNotFound)}, nil
		}
	}
	// 3. Number and write the copies.
	data := []byte(m.Data)
	if data == nil {
		data = []byte{} // the column is NOT NULL
	}
	es := make([]protocol.Entry, len(m.Inboxes))
	for i, in := range m.Inboxes {
		seq := b.last[in] + 1
		if _, err := b.insEntry.ExecContext(b.ctx, in, seq, m.ID, m.From, m.To, m.TS, m.Type, m.Cid, data, storage.ConvOf(m, in)); err != nil {
			return result{}, err
		}
		b.last[in], b.dirty[in] = seq, true
		es[i] = protocol.Entry{ID: m.ID, Inbox: in, Seq: seq, From: m.From, To: m.To,
			TS: m.TS, Type: m.Type, Cid: m.Cid, Data: m.Data}
	}
	if m.Idempotent() {
		if _, err := b.insDedup.ExecContext(b.ctx, m.From, m.Cid, m.ID); err != nil {
			return result{}, err
		}
	}
	if a, c, ok := storage.ContactPair(m); ok {
		for _, p := range [][2]string{{a, c}, {c, a}} {
			if _, err := b.insContact.ExecContext(b.ctx, p[0], p[1], m.TS); err != nil {
				return result{}, err
			}
		}
	}
	if b.insPushJob != nil && storage.WantsPush(m) {
		if _, err := b.insPushJob.ExecContext(b.ctx, m.ID, es[0].Inbox, es[0].Seq, m.From, m.To, m.TS, data); err != nil {
			return result{}, err
		}
	}
	return result{entries: es}, nil
}

// load reads an inbox's counter into b.last unless it is there already, and
// reports whether the inbox exists.
func (b *batch) load(inbox string) (bool, error) {
	if _, ok := b.last[inbox]; ok {
		return true, nil
	}
	if b.missing[inbox] {
		return false, nil
	}
	var last int64
	err := b.selInbox.QueryRowContext(b.ctx, inbox).Scan(&last)
	if errors.Is(err, sql.ErrNoRows) {
		b.missing[inbox] = true
		return false, nil
	}
	if err != nil {
		return false, err
	}
	b.last[inbox] = last
	return true, nil
}

// entriesByID returns the stored copies of one message in the order of
// inboxes (the repeat's own list, normally the same as the first's); copies
// in other inboxes come last, by inbox.
func (b *batch) entriesByID(id string, inboxes []string) ([]protocol.Entry, error) {
	rows, err := b.selByID.QueryContext(b.ctx, id)
	if err != nil {
		return nil, err
	}
	es, err := scanEntries(rows)
	if err != nil {
		return nil, err
	}
	pos := func(inbox string) int {
		if i := slices.Index(inboxes, inbox); i >= 0 {
			return i
		}
		return len(inboxes)
	}
	slices.SortFunc(es, func(x, y protocol.Entry) int {
		return cmp.Or(cmp.Compare(pos(x.Inbox), pos(y.Inbox)), cmp.Compare(x.Inbox, y.Inbox), cmp.Compare(x.Seq, y.Seq))
	})
	return es, nil
}

// flush writes back the counters the batch has moved.
func (b *batch) flush() error {
	for in := range b.dirty {
		if _, err := b.updInbox.ExecContext(b.ctx, b.last[in], in); err != nil {
			return err
		}
	}
	clear(b.dirty)
	return nil
}

// runOp runs a write other than an append inside a savepoint, so that its
// failure (a taken id, say) undoes it alone and leaves the batch going. An
// error of the database itself fails the transaction.
func (b *batch) runOp(op func(ctx context.Context, tx *sql.Tx) error) (result, error) {
	// The op sees the counters as the appends before it left them, and
	// may create inboxes: write the counters out and forget them.
	if err := b.flush(); err != nil {
		return result{}, err
	}
	clear(b.last)
	clear(b.missing)
	if _, err := b.tx.ExecContext(b.ctx, "SAVEPOINT op"); err != nil {
		return result{}, err
	}
	opErr := op(b.ctx, b.tx)
	if opErr != nil && unavailable(opErr) {
		return result{}, opErr
	}
	if opErr != nil {
		if _, err := b.tx.ExecContext(b.ctx, "ROLLBACK TO op"); err != nil {
			return result{}, err
		}
	}
	if _, err := b.tx.ExecContext(b.ctx, "RELEASE op"); err != nil {
		return result{}, err
	}
	return result{err: opErr}, nil
}
