package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/storage/groupcommit"
)

// A request is one write queued for the writer: an append, or any other
// write (op). Each is answered once, after the transaction that carried it
// committed or failed.
type request struct {
	m  *storage.Message                            // an append, or
	op func(ctx context.Context, tx *sql.Tx) error // another write
}

// result is the answer to an append (an op has none but its error).
type result struct {
	entries []protocol.Entry
	dup     bool
}

// writer is the store's one group-commit engine: SQLite has one write lock
// per database, so every write goes through one queue.
type writer = groupcommit.Engine[*request, result]

// Append stores a message in its inboxes; see storage.Messages. It queues the
// message for the writer and returns once the transaction that carries it has
// committed (and is synced to disk) or failed. A message no store can hold
// fails with ErrInvalid before it is queued: SQLite itself would store a NUL
// or a 6 KB cid, which Postgres (and parley migrate-store) cannot take.
func (s *Store) Append(ctx context.Context, m storage.Message) ([]protocol.Entry, bool, error) {
	if len(m.Inboxes) == 0 {
		return nil, false, errors.New("append: no inboxes")
	}
	if err := m.Check(); err != nil {
		return nil, false, fmt.Errorf("append: %w", err)
	}
	if len(m.Owed) > 0 || m.Copy {
		// Owed and relayed copies are a sharded store's: the embedded
		// store is one node, one file.
		return nil, false, fmt.Errorf("append: %w: the embedded store is not sharded", storage.ErrInvalid)
	}
	res, err := s.w.Do(ctx, &request{m: &m})
	if err != nil {
		return nil, false, fmt.Errorf("append: %w", err)
	}
	return res.entries, res.dup, nil
}

// writeOne runs one statement in a write transaction and returns notFound
// when it changed no row (an unknown user or group).
func (s *Store) writeOne(ctx context.Context, notFound error, query string, args ...any) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return notFound
		}
		return nil
	})
}

// write runs op in a transaction of the writer, between or alongside appends,
// and returns its error. Every write goes through the writer: SQLite has one
// write lock per database, and a second writing connection would only wait
// for it (polling, under busy_timeout) instead of queueing fairly.
func (s *Store) write(ctx context.Context, op func(ctx context.Context, tx *sql.Tx) error) error {
	_, err := s.w.Do(ctx, &request{op: op})
	return err
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

// commit runs one transaction for a batch of requests: a
// groupcommit.CommitFunc. An op runs in a savepoint, so that its own failure
// (a taken id) undoes it alone; an append that finds an inbox missing
// writes nothing. Anything else that fails breaks the transaction, and the
// engine isolates the request to blame.
func (s *Store) commit(ctx context.Context, reqs []*request) ([]groupcommit.Result[result], error) {
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	b, err := newBatch(ctx, tx, s.cfg.PushJobs)
	if err != nil {
		return nil, err
	}
	defer b.close()

	out := make([]groupcommit.Result[result], len(reqs))
	for i, r := range reqs {
		var res result
		var own error // concerns this request alone
		if r.op != nil {
			own, err = b.runOp(r.op)
		} else {
			res, own, err = b.append(r.m)
		}
		if err != nil {
			return nil, err
		}
		out[i] = groupcommit.Result[result]{Value: res, Err: own}
	}
	if err := b.flush(); err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	return out, nil
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
		{&b.selDedup, "SELECT id FROM dedup WHERE sender = ? AND inbox = ? AND cid = ?"},
		{&b.insDedup, "INSERT INTO dedup (sender, inbox, cid, id) VALUES (?, ?, ?, ?)"},
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

// append stores one message. own (an inbox that does not exist) concerns the
// message alone and leaves nothing behind; err fails the transaction.
func (b *batch) append(m *storage.Message) (res result, own, err error) {
	// 1. Idempotency, keyed on (sender, inbox, cid). The lookup runs inside
	// the transaction, so it also finds a first copy stored earlier in this
	// same batch.
	if m.Idempotent() {
		var id string
		err := b.selDedup.QueryRowContext(b.ctx, m.From, m.DedupInbox(), m.Cid).Scan(&id)
		if err == nil {
			es, err := b.entriesByID(id, m.Inboxes)
			if err != nil {
				return result{}, nil, err
			}
			return result{entries: es, dup: true}, nil, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return result{}, nil, err
		}
	}
	// 2. Every inbox must exist before anything is written.
	for _, in := range m.Inboxes {
		ok, err := b.load(in)
		if err != nil {
			return result{}, nil, err
		}
		if !ok {
			return result{}, fmt.Errorf("inbox %s: %w", in, storage.ErrNotFound), nil
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
			return result{}, nil, err
		}
		b.last[in], b.dirty[in] = seq, true
		es[i] = protocol.Entry{ID: m.ID, Inbox: in, Seq: seq, From: m.From, To: m.To,
			TS: m.TS, Type: m.Type, Cid: m.Cid, Data: m.Data}
	}
	if m.Idempotent() {
		if _, err := b.insDedup.ExecContext(b.ctx, m.From, m.DedupInbox(), m.Cid, m.ID); err != nil {
			return result{}, nil, err
		}
	}
	for _, p := range storage.ContactRows(m) {
		if _, err := b.insContact.ExecContext(b.ctx, p[0], p[1], m.TS); err != nil {
			return result{}, nil, err
		}
	}
	if b.insPushJob != nil && storage.WantsPush(m) {
		if _, err := b.insPushJob.ExecContext(b.ctx, m.ID, es[0].Inbox, es[0].Seq, m.From, m.To, m.TS, data); err != nil {
			return result{}, nil, err
		}
	}
	return result{entries: es}, nil, nil
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
func (b *batch) runOp(op func(ctx context.Context, tx *sql.Tx) error) (own, err error) {
	// The op sees the counters as the appends before it left them, and
	// may create inboxes: write the counters out and forget them.
	if err := b.flush(); err != nil {
		return nil, err
	}
	clear(b.last)
	clear(b.missing)
	if _, err := b.tx.ExecContext(b.ctx, "SAVEPOINT op"); err != nil {
		return nil, err
	}
	opErr := op(b.ctx, b.tx)
	if opErr != nil && unavailable(opErr) {
		return nil, opErr
	}
	if opErr != nil {
		if _, err := b.tx.ExecContext(b.ctx, "ROLLBACK TO op"); err != nil {
			return nil, err
		}
	}
	if _, err := b.tx.ExecContext(b.ctx, "RELEASE op"); err != nil {
		return nil, err
	}
	return opErr, nil
}
