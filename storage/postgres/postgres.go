// Package postgres is Parley's production store: storage.Store on PostgreSQL
// through pgx v5 and a connection pool.
//
// Appends go through group commit (storage/groupcommit): writers, each owning
// a hash shard of inboxes, gather every pending append into one transaction,
// so throughput grows with concurrent senders while each caller still returns
// only after its entries are committed. A transaction locks the counter rows
// of the inboxes it touches in sorted order, so two writers never deadlock
// when one message touches inboxes of two shards (a DM's recipient and sender
// copies). A message the database refuses (a value it cannot hold) fails
// alone: the engine commits the rest of its batch without it.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/storage/groupcommit"
)

// Config configures the Postgres store.
type Config struct {
	// URL is a postgres:// connection string. Required.
	URL string
	// Writers is the number of group-commit writers (inbox shards). Default 4.
	Writers int
	// MaxBatch is the most appends one transaction carries. Default 512.
	MaxBatch int
	// MaxConns is the pool size. Default Writers + 8.
	MaxConns int32
	// OpTimeout bounds each database operation. Default 5s.
	OpTimeout time.Duration
	// ConnectTimeout bounds establishing a connection. Default 3s.
	ConnectTimeout time.Duration
	// OnBatch, if set, is told about every group-commit batch: how many
	// appends it carried, how long it took, and the error that failed it as
	// one transaction (see groupcommit.Config.OnBatch). For metrics.
	OnBatch func(size int, took time.Duration, err error)
	// PushJobs queues a push job (table push_jobs) with every new message of
	// type msg, in the transaction that stores it. Set it when a push
	// service consumes the queue. Default false.
	PushJobs bool
}

func (c *Config) setDefaults() {
	if c.Writers <= 0 {
		c.Writers = 4
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 512
	}
	if c.MaxConns <= 0 {
		c.MaxConns = int32(c.Writers) + 8
	}
	if c.OpTimeout <= 0 {
		c.OpTimeout = 5 * time.Second
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 3 * time.Second
	}
}

// Store is storage.Store on PostgreSQL.
type Store struct {
	cfg    Config
	log    *slog.Logger
	pool   *pgxpool.Pool
	shards []*shard // one group-commit engine per shard of inboxes

	closeOnce sync.Once
}

var _ storage.Store = (*Store)(nil)

// Open connects to the database, applies missing migrations and starts the
// writers. The database must exist (see CreateDatabase).
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*Store, error) {
	cfg.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pcfg, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse url: %w", err)
	}
	pcfg.MaxConns = cfg.MaxConns
	pcfg.ConnConfig.ConnectTimeout = cfg.ConnectTimeout
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: migrate: %w", classify(err))
	}
	s := &Store{cfg: cfg, log: log, pool: pool}
	for i := range cfg.Writers {
		s.shards = append(s.shards, groupcommit.New(groupcommit.Config{
			MaxBatch:    cfg.MaxBatch,
			Timeout:     cfg.OpTimeout,
			Unavailable: unavailable,
			Retryable:   retryable,
			Classify:    classifyBatch,
			OnBatch:     cfg.OnBatch,
			Log:         log.With("component", "postgres_writer", "shard", i),
		}, s.commit))
	}
	return s, nil
}

// Pool returns the connection pool, for tests and tools.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close finishes pending appends, stops the writers and closes the pool. It is
// safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		// Every shard refuses new appends before any waits for its queue,
		// so that no shard takes appends while another drains.
		var wg sync.WaitGroup
		for _, sh := range s.shards {
			wg.Go(sh.Close)
		}
		wg.Wait()
		s.pool.Close()
	})
	return nil
}

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
	defer cancel()
	if _, err := s.pool.Exec(ctx, "SELECT 1"); err != nil {
		return fmt.Errorf("ping: %w", classify(err))
	}
	return nil
}

// classify maps a driver error onto the storage sentinel errors, keeping the
// original in the chain. Errors that already carry a sentinel pass through.
func classify(err error) error {
	if err == nil {
		return nil
	}
	for _, sentinel := range []error{storage.ErrNotFound, storage.ErrExists, storage.ErrInvalid, storage.ErrUnavailable, storage.ErrClosed} {
		if errors.Is(err, sentinel) {
			return err
		}
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: %w", storage.ErrNotFound, err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "23505":
			return fmt.Errorf("%w: %w", storage.ErrExists, err)
		case pgErr.Code[:2] == "22", pgErr.Code[:2] == "54":
			// A data exception (a NUL in text, 22021; a bad uuid, 22P02)
			// or a program limit (an index row over 2,704 bytes, 54000):
			// the value is at fault, not the database.
			return fmt.Errorf("%w: %w", storage.ErrInvalid, err)
		case pgErr.Code[:2] == "08", pgErr.Code[:2] == "53", pgErr.Code[:2] == "57", pgErr.Code[:2] == "58":
			return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
		}
		return err
	}
	var netErr net.Error
	if errors.As(err, &netErr) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
	}
	// Anything else that is not a server error (closed pool, broken conn, a
	// failed connect) means the database is out of reach.
	return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
}

func (s *Store) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.OpTimeout)
}

// CreateUser stores the user and creates its inbox in one transaction.
func (s *Store) CreateUser(ctx context.Context, u storage.User) error {
	if err := u.Check(); err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "INSERT INTO users (id, name, password_hash) VALUES ($1, $2, $3)",
			u.ID, u.Name, u.PasswordHash); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO inboxes (id) VALUES ($1) ON CONFLICT DO NOTHING", protocol.UserInbox(u.ID))
		return err
	})
	if err != nil {
		return fmt.Errorf("create user: %w", classify(err))
	}
	return nil
}

// GetUser returns a user by id.
func (s *Store) GetUser(ctx context.Context, id string) (storage.User, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var u storage.User
	var deleted *time.Time
	err := s.pool.QueryRow(ctx, "SELECT id, name, password_hash, created_at, deleted_at FROM users WHERE id = $1", id).
		Scan(&u.ID, &u.Name, &u.PasswordHash, &u.CreatedAt, &deleted)
	if err != nil {
		return storage.User{}, fmt.Errorf("get user: %w", classify(err))
	}
	if deleted != nil {
		u.DeletedAt = *deleted
	}
	return u, nil
}

// CreateToken stores a token hash for a user that exists and is not
// deleted.
func (s *Store) CreateToken(ctx context.Context, hash []byte, user string, expires time.Time) error {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	tag, err := s.pool.Exec(ctx, `INSERT INTO tokens (hash, user_id, expires_at)
		SELECT $1, id, $3 FROM users WHERE id = $2 AND deleted_at IS NULL`, hash, user, expires)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23503" {
			return fmt.Errorf("create token: %w", storage.ErrNotFound)
		}
		return fmt.Errorf("create token: %w", classify(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("create token: user %q: %w", user, storage.ErrNotFound)
	}
	return nil
}

// TokenUser resolves an unexpired token.
func (s *Store) TokenUser(ctx context.Context, hash []byte, now time.Time) (string, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var user string
	err := s.pool.QueryRow(ctx, "SELECT user_id FROM tokens WHERE hash = $1 AND expires_at > $2", hash, now).Scan(&user)
	if err != nil {
		return "", fmt.Errorf("token user: %w", classify(err))
	}
	return user, nil
}

// DeleteToken revokes a token.
func (s *Store) DeleteToken(ctx context.Context, hash []byte) error {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	if _, err := s.pool.Exec(ctx, "DELETE FROM tokens WHERE hash = $1", hash); err != nil {
		return fmt.Errorf("delete token: %w", classify(err))
	}
	return nil
}

const entryColumns = "inbox, seq, id::text, sender, recipient, ts, kind, cid, data"

func scanEntries(rows pgx.Rows) ([]protocol.Entry, error) {
	defer rows.Close()
	var es []protocol.Entry
	for rows.Next() {
		var e protocol.Entry
		var data []byte
		if err := rows.Scan(&e.Inbox, &e.Seq, &e.ID, &e.From, &e.To, &e.TS, &e.Type, &e.Cid, &data); err != nil {
			return nil, err
		}
		e.Data = data
		es = append(es, e)
	}
	return es, rows.Err()
}

// Read returns entries after a seq, oldest first.
func (s *Store) Read(ctx context.Context, inbox string, after int64, limit int) ([]protocol.Entry, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, "SELECT "+entryColumns+" FROM entries WHERE inbox = $1 AND seq > $2 ORDER BY seq LIMIT $3",
		inbox, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read: %w", classify(err))
	}
	es, err := scanEntries(rows)
	if err != nil {
		return nil, fmt.Errorf("read: %w", classify(err))
	}
	return es, nil
}

// ReadBefore returns the newest entries below a seq, oldest first.
func (s *Store) ReadBefore(ctx context.Context, inbox string, before int64, limit int) ([]protocol.Entry, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, "SELECT * FROM (SELECT "+entryColumns+
		" FROM entries WHERE inbox = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3) AS page ORDER BY seq",
		inbox, before, limit)
	if err != nil {
		return nil, fmt.Errorf("read before: %w", classify(err))
	}
	es, err := scanEntries(rows)
	if err != nil {
		return nil, fmt.Errorf("read before: %w", classify(err))
	}
	return es, nil
}

// LastSeq returns the newest seq of an inbox.
func (s *Store) LastSeq(ctx context.Context, inbox string) (int64, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var seq int64
	if err := s.pool.QueryRow(ctx, "SELECT last_seq FROM inboxes WHERE id = $1", inbox).Scan(&seq); err != nil {
		return 0, fmt.Errorf("last seq: %w", classify(err))
	}
	return seq, nil
}

// GetCursor returns a device's cursor in an inbox.
func (s *Store) GetCursor(ctx context.Context, clientID, inbox string) (int64, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var seq int64
	err := s.pool.QueryRow(ctx, "SELECT seq FROM cursors WHERE client_id = $1 AND inbox = $2", clientID, inbox).Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("get cursor: %w", classify(err))
	}
	return seq, nil
}

// SaveCursors upserts cursors; a cursor never moves backwards. Cursors no
// store can hold are dropped before the write; should the database still
// refuse the batch for a value, each cursor is saved alone, so that one bad
// row never costs every device its cursor.
func (s *Store) SaveCursors(ctx context.Context, cs []storage.Cursor) error {
	valid, dropped, why := storage.ValidCursors(cs)
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	n, err := s.saveCursors(ctx, valid)
	if err != nil {
		return fmt.Errorf("save cursors: %w", err)
	}
	if n.dropped > 0 && why == nil {
		why = n.why
	}
	if dropped += n.dropped; dropped > 0 {
		return fmt.Errorf("save cursors: %w", storage.DroppedCursors(dropped, len(cs), why))
	}
	return nil
}

// droppedRows counts the rows a write skipped because the database refused
// them, with the first refusal.
type droppedRows struct {
	dropped int
	why     error
}

const upsertCursors = `INSERT INTO cursors (client_id, inbox, seq)
	SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
	ON CONFLICT (client_id, inbox) DO UPDATE SET seq = GREATEST(cursors.seq, EXCLUDED.seq), updated_at = now()`

// saveCursors upserts cs in one statement, or row by row when the database
// refuses the statement for one of its values (not when it is unavailable).
func (s *Store) saveCursors(ctx context.Context, cs []storage.Cursor) (droppedRows, error) {
	if len(cs) == 0 {
		return droppedRows{}, nil
	}
	// One statement may not touch a row twice: keep the highest seq per key.
	type key struct{ c, i string }
	top := make(map[key]int64, len(cs))
	for _, c := range cs {
		k := key{c.ClientID, c.Inbox}
		if v, ok := top[k]; !ok || c.Seq > v {
			top[k] = c.Seq
		}
	}
	clients := make([]string, 0, len(top))
	inboxes := make([]string, 0, len(top))
	seqs := make([]int64, 0, len(top))
	for k, v := range top {
		clients, inboxes, seqs = append(clients, k.c), append(inboxes, k.i), append(seqs, v)
	}
	_, err := s.pool.Exec(ctx, upsertCursors, clients, inboxes, seqs)
	if err == nil {
		return droppedRows{}, nil
	}
	if err = classify(err); len(clients) == 1 || !errors.Is(err, storage.ErrInvalid) {
		if errors.Is(err, storage.ErrInvalid) {
			return droppedRows{dropped: 1, why: err}, nil
		}
		return droppedRows{}, err
	}
	s.log.Warn("cursor flush refused, saving cursors one by one", "count", len(clients), "error", err)
	var d droppedRows
	for i := range clients {
		_, err := s.pool.Exec(ctx, upsertCursors, clients[i:i+1], inboxes[i:i+1], seqs[i:i+1])
		switch err = classify(err); {
		case err == nil:
		case errors.Is(err, storage.ErrInvalid):
			d.dropped++
			if d.why == nil {
				d.why = err
			}
		default:
			return d, err
		}
	}
	return d, nil
}

// CreateDatabase creates the database named in url if it does not exist,
// connecting to the server's "postgres" database to do so.
func CreateDatabase(ctx context.Context, url string) error {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return fmt.Errorf("create database: parse url: %w", err)
	}
	name := cfg.Database
	cfg.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("create database: %w", classify(err))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("create database: %w", classify(err))
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		var pgErr *pgconn.PgError
		// Created concurrently, by another node starting at the same time:
		// 42P04 when Postgres saw the other database, 23505 (unique
		// violation on pg_database's name index) when both CREATEs raced.
		if errors.As(err, &pgErr) && (pgErr.Code == "42P04" || pgErr.Code == "23505") {
			return nil
		}
		return fmt.Errorf("create database: %w", err)
	}
	return nil
}

// skeletonExpr is protocol.IDSkeleton in SQL, as indexed by
// 013_id_skeletons.sql.
const skeletonExpr = `replace(replace(replace(replace(replace(id, '0', 'o'), '1', 'l'), 'i', 'l'), 'rn', 'm'), 'vv', 'w')`

// UsersLike returns the ids whose skeleton is skeleton.
func (s *Store) UsersLike(ctx context.Context, skeleton string) ([]string, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, "SELECT id FROM users WHERE "+skeletonExpr+" = $1 ORDER BY id", skeleton)
	if err != nil {
		return nil, fmt.Errorf("users like: %w", classify(err))
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("users like: %w", classify(err))
	}
	return ids, nil
}
