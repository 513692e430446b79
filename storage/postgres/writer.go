package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/storage/groupcommit"
)

// appended is the answer to one append.
type appended struct {
	entries []protocol.Entry
	dup     bool
}

// shard is the group-commit engine of one shard of inboxes (by the hash of
// a message's first inbox). Each shard commits its own appends, so writers
// never wait on each other's counter rows.
type shard = groupcommit.Engine[*storage.Message, appended]

var shardSeed = maphash.MakeSeed()

// Append stores a message in its inboxes; see storage.Messages. A message
// that no store can hold fails with ErrInvalid before it is queued.
func (s *Store) Append(ctx context.Context, m storage.Message) ([]protocol.Entry, bool, error) {
	if err := m.Check(); err != nil {
		return nil, false, fmt.Errorf("append: %w", err)
	}
	return s.append(ctx, m)
}

// append queues m to its shard and waits for the transaction that carries
// it. It does not check m: a value the database refuses is isolated by the
// engine, failing alone (tests use this to poison a batch).
func (s *Store) append(ctx context.Context, m storage.Message) ([]protocol.Entry, bool, error) {
	if len(m.Inboxes) == 0 {
		return nil, false, errors.New("append: no inboxes")
	}
	sh := s.shards[maphash.String(shardSeed, m.Inboxes[0])%uint64(len(s.shards))]
	a, err := sh.Do(ctx, &m)
	if err != nil {
		return nil, false, fmt.Errorf("append: %w", err)
	}
	return a.entries, a.dup, nil
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

// errRolledBack: COMMIT answered ROLLBACK without an error, so some
// statement of the batch failed; blamed on the batch's requests, not on the
// database.
var errRolledBack = errors.New("commit: transaction rolled back")

// unavailable reports errors of the database itself (connection lost, a
// timeout, I/O, a full disk, a closed pool): a batch that failed with one
// fails whole. Anything else (a NUL in a text, an index row too big, a
// constraint) is blamed on a request, which the engine isolates.
func unavailable(err error) bool {
	if errors.Is(err, errRolledBack) {
		return false
	}
	return errors.Is(classify(err), storage.ErrUnavailable)
}

// classifyBatch classifies the error of a failed append transaction.
// Unlike classify it maps no constraint to ErrExists: in an append that is
// a broken invariant, not a taken id.
func classifyBatch(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return err
	}
	return classify(err)
}

// dedupKey is an idempotency key: (sender, inbox, cid), the inbox being
// the message's DedupInbox.
type dedupKey struct{ sender, inbox, cid string }

func keyOf(m *storage.Message) dedupKey { return dedupKey{m.From, m.DedupInbox(), m.Cid} }

// commit runs one transaction for the appends of a batch: a
// groupcommit.CommitFunc. Two round trips: the first begins, looks up the
// batch's idempotency keys and locks the inbox counters; the second writes
// counters, entries, keys, contacts and push jobs, and commits.
func (s *Store) commit(ctx context.Context, reqs []*storage.Message) ([]groupcommit.Result[appended], error) {
	// Which idempotency keys repeat inside this batch, and which inboxes
	// the batch may touch. (The appends of one key go to one shard, that
	// of their first inbox: on one node they meet in one engine, in one
	// batch or one after the other.)
	var senders, inboxes, cids []string
	first := map[dedupKey]*storage.Message{}
	followers := map[*storage.Message]*storage.Message{}
	touched := map[string]bool{}
	// Relayed copies are keyed on (inbox, message id): a repeat of one in
	// this batch follows the first, one stored before is found by id.
	var copyIDs []string
	firstCopy := map[copyKey]*storage.Message{}
	for _, r := range reqs {
		if r.Copy {
			k := copyKey{r.Inboxes[0], r.ID}
			if f, ok := firstCopy[k]; ok {
				followers[r] = f
				continue
			}
			firstCopy[k] = r
			copyIDs = append(copyIDs, r.ID)
		}
		if r.Idempotent() {
			k := keyOf(r)
			if f, ok := first[k]; ok {
				followers[r] = f
				continue
			}
			first[k] = r
			senders, inboxes, cids = append(senders, k.sender), append(inboxes, k.inbox), append(cids, k.cid)
		}
		for _, in := range r.Inboxes {
			touched[in] = true
		}
	}
	ids := make([]string, 0, len(touched))
	for id := range touched {
		ids = append(ids, id)
	}
	slices.Sort(ids)

	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
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
		b1.Queue(`SELECT d.sender, d.inbox, d.cid, d.id::text FROM dedup d
			JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(sender, inbox, cid)
			ON d.sender = k.sender AND d.inbox = k.inbox AND d.cid = k.cid`, senders, inboxes, cids)
	}
	b1.Queue("SELECT id, last_seq FROM inboxes WHERE id = ANY($1) ORDER BY id FOR UPDATE", ids)
	if len(copyIDs) > 0 {
		// After the counters' locks: a copy committed by another writer
		// of the inbox since is seen.
		b1.Queue("SELECT inbox, id::text FROM entries WHERE id = ANY($1::uuid[])", copyIDs)
	}
	br := conn.SendBatch(ctx, &b1)
	if _, err := br.Exec(); err != nil {
		br.Close()
		return nil, err
	}
	stored := map[dedupKey]string{} // key -> message id stored earlier
	if len(senders) > 0 {
		rows, err := br.Query()
		if err != nil {
			br.Close()
			return nil, err
		}
		for rows.Next() {
			var k dedupKey
			var id string
			if err := rows.Scan(&k.sender, &k.inbox, &k.cid, &id); err != nil {
				rows.Close()
				br.Close()
				return nil, err
			}
			stored[k] = id
		}
		if err := rows.Err(); err != nil {
			br.Close()
			return nil, err
		}
	}
	next := map[string]int64{}
	rows, err := br.Query()
	if err != nil {
		br.Close()
		return nil, err
	}
	for rows.Next() {
		var id string
		var last int64
		if err := rows.Scan(&id, &last); err != nil {
			rows.Close()
			br.Close()
			return nil, err
		}
		next[id] = last
	}
	if err := rows.Err(); err != nil {
		br.Close()
		return nil, err
	}
	copied := map[copyKey]bool{} // relayed copies stored before
	if len(copyIDs) > 0 {
		rows, err := br.Query()
		if err != nil {
			br.Close()
			return nil, err
		}
		for rows.Next() {
			var k copyKey
			if err := rows.Scan(&k.inbox, &k.id); err != nil {
				rows.Close()
				br.Close()
				return nil, err
			}
			copied[k] = true
		}
		if err := rows.Err(); err != nil {
			br.Close()
			return nil, err
		}
	}
	if err := br.Close(); err != nil {
		return nil, err
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
	var fresh []*storage.Message
	for _, r := range reqs {
		if _, ok := followers[r]; ok {
			continue
		}
		if r.Idempotent() {
			if _, ok := stored[keyOf(r)]; ok {
				continue
			}
		}
		if r.Copy && copied[copyKey{r.Inboxes[0], r.ID}] {
			continue
		}
		fresh = append(fresh, r)
	}

	// Number the new entries.
	n := 0
	for _, r := range fresh {
		n += len(r.Inboxes)
	}
	var (
		eInbox, eID, eSender, eTo, eKind, eCid, eConv []string
		eSeq, eTS                                     []int64
		eData                                         [][]byte
		dSender, dInbox, dCid, dID                    []string
		owed                                          owedRows
	)
	eInbox, eID, eSender, eTo = make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
	eKind, eCid, eSeq, eTS, eData = make([]string, 0, n), make([]string, 0, n), make([]int64, 0, n), make([]int64, 0, n), make([][]byte, 0, n)
	eConv = make([]string, 0, n)
	results := make(map[*storage.Message][]protocol.Entry, len(fresh))
	failed := map[*storage.Message]bool{}
	for _, r := range fresh {
		ok := true
		for _, in := range r.Inboxes {
			if missing[in] {
				ok = false
			}
		}
		if !ok {
			failed[r] = true
			continue
		}
		es := make([]protocol.Entry, len(r.Inboxes))
		for i, in := range r.Inboxes {
			next[in]++
			es[i] = protocol.Entry{ID: r.ID, Inbox: in, Seq: next[in], From: r.From, To: r.To,
				TS: r.TS, Type: r.Type, Cid: r.Cid, Data: r.Data}
			eInbox, eSeq, eID, eSender = append(eInbox, in), append(eSeq, next[in]), append(eID, r.ID), append(eSender, r.From)
			eTo, eTS, eKind, eCid, eData = append(eTo, r.To), append(eTS, r.TS), append(eKind, r.Type), append(eCid, r.Cid), append(eData, nonNil(r.Data))
			eConv = append(eConv, storage.ConvOf(r, in))
		}
		results[r] = es
		for _, in := range r.Owed {
			owed.add(r, in)
		}
		if r.Idempotent() {
			k := keyOf(r)
			dSender, dInbox, dCid, dID = append(dSender, k.sender), append(dInbox, k.inbox), append(dCid, k.cid), append(dID, r.ID)
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
			b2.Queue(`INSERT INTO dedup (sender, inbox, cid, id) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[])`,
				dSender, dInbox, dCid, dID)
		}
		if len(owed.inbox) > 0 {
			b2.Queue(`INSERT INTO parley_shard.outbox (inbox, id, sender, recipient, ts, kind, cid, data, conv)
				SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[], $8::bytea[], $9::text[])`,
				owed.inbox, owed.id, owed.sender, owed.to, owed.ts, owed.kind, owed.cid, owed.data, owed.conv)
		}
		if cu, cp, cts := contactRows(fresh, results); len(cu) > 0 {
			// Sorted rows take their locks in one order in every writer.
			b2.Queue(`INSERT INTO contacts (user_id, peer, last_ts) SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
				ON CONFLICT DO NOTHING`, cu, cp, cts)
		}
	}
	if s.cfg.PushJobs {
		queuePushJobs(&b2, fresh, results)
	}
	b2.Queue("COMMIT")
	if err := conn.SendBatch(ctx, &b2).Close(); err != nil {
		return nil, err
	}
	if conn.Conn().PgConn().TxStatus() != 'I' {
		// COMMIT of a failed transaction answers ROLLBACK without an error.
		return nil, errRolledBack
	}
	committed = true

	// Answer, in the order of reqs: new entries, inboxes that do not exist,
	// and duplicates (read back after the commit; the first copy may have
	// come in this batch).
	out := make([]groupcommit.Result[appended], len(reqs))
	notFound := fmt.Errorf("inbox: %w", storage.ErrNotFound)
	for i, r := range reqs {
		if es, ok := results[r]; ok {
			out[i].Value = appended{entries: es}
			continue
		}
		if failed[r] {
			out[i].Err = notFound
			continue
		}
		if r.Copy {
			// A copy stored before (or whose first in this batch failed).
			f := r
			if x, ok := followers[r]; ok {
				f = x
			}
			if es, ok := results[f]; ok {
				out[i].Value = appended{entries: es, dup: true}
				continue
			}
			if !copied[copyKey{r.Inboxes[0], r.ID}] {
				out[i].Err = notFound
				continue
			}
			es, err := s.entriesByID(ctx, r.ID)
			if err != nil {
				out[i].Err = fmt.Errorf("read duplicate: %w", classify(err))
				continue
			}
			es = slices.DeleteFunc(es, func(e protocol.Entry) bool { return e.Inbox != r.Inboxes[0] })
			out[i].Value = appended{entries: es, dup: true}
			continue
		}
		var id string
		if f, ok := followers[r]; ok {
			if es, ok := results[f]; ok {
				out[i].Value = appended{entries: es, dup: true}
				continue
			}
			id = stored[keyOf(f)]
		} else {
			id = stored[keyOf(r)]
		}
		if id == "" { // the first of the pair failed: so does its repeat
			out[i].Err = notFound
			continue
		}
		es, err := s.entriesByID(ctx, id)
		if err != nil {
			out[i].Err = fmt.Errorf("read duplicate: %w", classify(err))
			continue
		}
		out[i].Value = appended{entries: es, dup: true}
	}
	return out, nil
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

// copyKey identifies a relayed copy: (inbox, message id).
type copyKey struct{ inbox, id string }

// owedRows are the outbox rows of a batch: copies owed to other shards.
type owedRows struct {
	inbox, id, sender, to, kind, cid, conv []string
	ts                                     []int64
	data                                   [][]byte
}

func (o *owedRows) add(m *storage.Message, inbox string) {
	o.inbox, o.id, o.sender, o.to = append(o.inbox, inbox), append(o.id, m.ID), append(o.sender, m.From), append(o.to, m.To)
	o.ts, o.kind, o.cid, o.data = append(o.ts, m.TS), append(o.kind, m.Type), append(o.cid, m.Cid), append(o.data, nonNil(m.Data))
	o.conv = append(o.conv, storage.ConvOf(m, inbox))
}

// contactRows returns the conversation-list rows (storage.ContactRows) of
// the stored messages of a batch, sorted and without repeats.
func contactRows(fresh []*storage.Message, stored map[*storage.Message][]protocol.Entry) (users, peers []string, ts []int64) {
	type pair struct{ u, p string }
	seen := map[pair]int64{}
	for _, r := range fresh {
		if _, ok := stored[r]; !ok {
			continue
		}
		for _, row := range storage.ContactRows(r) {
			seen[pair{row[0], row[1]}] = r.TS
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
