package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sqlitedrv "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/storage/groupcommit"
)

// Config configures the embedded store. Every field has a default, so the
// zero Config opens ./data/parley.db.
type Config struct {
	// Path is the database file. Missing parent directories are created.
	// SQLite keeps two more files next to it while the store is open,
	// Path+"-wal" and Path+"-shm": back up all three, or use SQLite's backup
	// API. Default "./data/parley.db".
	Path string
	// MaxBatch is the most writes (appends, and the other writes, which share
	// the writer) one transaction carries. Default 512.
	MaxBatch int
	// QueueSize is how many writes may wait for the writer; a write blocks,
	// up to its context, while the queue is full. Default 4 × MaxBatch.
	QueueSize int
	// Readers is the number of read-only connections. Default 4.
	Readers int
	// BusyTimeout is how long a statement waits for a lock that another
	// process holds (a backup, a second Parley on the same file) before it
	// fails with ErrUnavailable. Default 5s.
	BusyTimeout time.Duration
	// OpTimeout bounds each read and each write transaction. Default 5s.
	OpTimeout time.Duration
	// OnBatch, if set, is told about every write transaction: how many
	// writes it carried, how long it took, and its error. For metrics. It
	// runs on the writer goroutine before the batch's callers are answered:
	// keep it short, and do not call the store from it.
	OnBatch func(size int, took time.Duration, err error)
	// PushJobs queues a push job (table push_jobs) with every new message of
	// type msg, in the transaction that stores it. Set it when a push
	// service consumes the queue. Default false.
	PushJobs bool
}

// DefaultPath is where the store lives when Config.Path is empty.
const DefaultPath = "./data/parley.db"

func (c *Config) setDefaults() {
	if c.Path == "" {
		c.Path = DefaultPath
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 512
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 4 * c.MaxBatch
	}
	if c.Readers <= 0 {
		c.Readers = 4
	}
	if c.BusyTimeout <= 0 {
		c.BusyTimeout = 5 * time.Second
	}
	if c.OpTimeout <= 0 {
		c.OpTimeout = 5 * time.Second
	}
}

func (c *Config) validate() error {
	// Every connection must see the same database: an in-memory one would
	// give each connection its own.
	if c.Path == ":memory:" || strings.HasPrefix(c.Path, "file:") {
		return fmt.Errorf("path %q: want a file path", c.Path)
	}
	return nil
}

// Store is storage.Store on an SQLite file.
type Store struct {
	cfg  Config
	log  *slog.Logger
	path string // absolute

	// wdb holds one connection, used by the writer goroutine alone (and by
	// migrations before it starts). Its transactions begin IMMEDIATE.
	wdb *sql.DB
	// rdb holds the read-only connections; reads never wait for the writer.
	rdb *sql.DB
	rd  readStmts

	w *writer // every write goes through it

	isClosed  atomic.Bool // set by Close; reads check it, writes are refused by w
	closeOnce sync.Once
	closeErr  error
}

var _ storage.Store = (*Store)(nil)

// Open opens (creating if needed) the database at cfg.Path, applies missing
// migrations and starts the writer.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*Store, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "sqlite")
	path, err := filepath.Abs(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: path: %w", err)
	}
	dir := filepath.Dir(path)
	if err := ensureDir(dir); err != nil {
		return nil, fmt.Errorf("sqlite: create directory: %w", err)
	}

	wdb, err := sql.Open("sqlite", dsn(path, cfg, false))
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	fail := func(what string, err error, dbs ...*sql.DB) (*Store, error) {
		for _, db := range dbs {
			db.Close()
		}
		return nil, fmt.Errorf("sqlite: %s: %w", what, classify(err))
	}
	var mode string
	if err := wdb.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fail("open", err, wdb)
	}
	if !strings.EqualFold(mode, "wal") {
		// SQLite falls back silently where WAL cannot work (no shared
		// memory, as on some network file systems).
		wdb.Close()
		return nil, fmt.Errorf("sqlite: open: journal mode is %q, want wal", mode)
	}
	if err := migrate(ctx, wdb); err != nil {
		return fail("migrate", err, wdb)
	}
	// SQLite syncs the directory when it creates the -wal file, not when it
	// creates the database file: make the new file's name durable too.
	if err := syncDir(dir); err != nil {
		return fail("sync directory", err, wdb)
	}

	rdb, err := sql.Open("sqlite", dsn(path, cfg, true))
	if err != nil {
		return fail("open readers", err, wdb)
	}
	rdb.SetMaxOpenConns(cfg.Readers)
	rdb.SetMaxIdleConns(cfg.Readers)
	rdb.SetConnMaxLifetime(0)
	rdb.SetConnMaxIdleTime(0)
	rd, err := prepareReads(ctx, rdb)
	if err != nil {
		return fail("prepare", err, rdb, wdb)
	}

	s := &Store{cfg: cfg, log: log, path: path, wdb: wdb, rdb: rdb, rd: rd}
	// No error is retryable: the one writer takes the write lock at BEGIN
	// (IMMEDIATE), so a transaction never loses a race to another.
	s.w = groupcommit.New(groupcommit.Config{
		MaxBatch:    cfg.MaxBatch,
		QueueSize:   cfg.QueueSize,
		Timeout:     cfg.OpTimeout,
		Unavailable: unavailable,
		Classify:    classifyWrite,
		OnBatch:     cfg.OnBatch,
		Log:         log,
	}, s.commit)
	log.Info("store open", "path", path, "readers", cfg.Readers, "max_batch", cfg.MaxBatch)
	return s, nil
}

// dsn is the driver's name for the database at path. Every connection gets
// busy_timeout, foreign keys and synchronous=FULL (any connection may run a
// checkpoint, so each one syncs); the writer's also turns on WAL and begins
// its transactions IMMEDIATE, the readers' refuse to write.
func dsn(path string, cfg Config, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", cfg.BusyTimeout.Milliseconds()))
	q.Add("_pragma", "foreign_keys(1)")
	// With synchronous=FULL a WAL commit is fsynced before COMMIT returns,
	// which is what lets an Append promise durability.
	q.Add("_pragma", "synchronous(FULL)")
	// On macOS fsync does not reach the disk; F_FULLFSYNC does. A no-op
	// elsewhere.
	q.Add("_pragma", "fullfsync(1)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Add("_pragma", "journal_mode(WAL)")
		// After a checkpoint, cut a WAL that a burst grew back to 64 MiB.
		q.Add("_pragma", "journal_size_limit(67108864)")
		// The writer is the only writer of this process, but IMMEDIATE
		// takes the write lock at BEGIN: a transaction never has to be
		// retried because another process wrote first.
		q.Set("_txlock", "immediate")
	}
	p := filepath.ToSlash(path)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p // a Windows drive letter
	}
	// A file: URI, with the path escaped, so that '?' or '#' in a directory
	// name are not read as the start of parameters.
	u := url.URL{Scheme: "file", Path: p, RawQuery: q.Encode()}
	return u.String()
}

// ensureDir creates dir and its missing parents, syncing each parent so that
// the new names survive a power loss.
func ensureDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case err == nil && fi.IsDir():
		return nil
	case err == nil:
		return fmt.Errorf("%s is not a directory", dir)
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := ensureDir(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDir(parent)
}

func syncDir(dir string) error {
	if runtime.GOOS == "windows" { // directories cannot be opened for syncing there
		return nil
	}
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// Path returns the absolute path of the database file.
func (s *Store) Path() string { return s.path }

// Close finishes the writes already queued, stops the writer and closes the
// database. It is safe to call more than once; every call returns the first
// one's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.isClosed.Store(true)
		s.w.Close() // commits the writes already queued
		// The writer's connection goes last: the last connection to close
		// checkpoints the WAL into the database file.
		s.closeErr = errors.Join(s.rd.close(), s.rdb.Close(), s.wdb.Close())
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("close: %w", s.closeErr)
		}
		s.log.Info("store closed", "path", s.path)
	})
	return s.closeErr
}

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel, err := s.reading(ctx)
	if err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	defer cancel()
	var one int
	if err := s.rdb.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("ping: %w", s.readErr(err))
	}
	return nil
}

// classify maps a driver error onto the storage sentinel errors, keeping the
// original in the chain. Errors that already carry a sentinel pass through.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, storage.ErrNotFound), errors.Is(err, storage.ErrExists), errors.Is(err, storage.ErrInvalid),
		errors.Is(err, storage.ErrUnavailable), errors.Is(err, storage.ErrClosed):
		return err
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%w: %w", storage.ErrNotFound, err)
	case sqliteCode(err) == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqliteCode(err) == sqlite3.SQLITE_CONSTRAINT_UNIQUE:
		return fmt.Errorf("%w: %w", storage.ErrExists, err)
	case unavailable(err):
		return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
	}
	return err
}

// sqliteCode returns the extended result code of an SQLite error, or 0.
func sqliteCode(err error) int {
	var se *sqlitedrv.Error
	if errors.As(err, &se) {
		return se.Code()
	}
	return 0
}

// unavailable reports errors that say the database, not the request, failed:
// a lock held too long, I/O, a full disk, a timeout. The same request may
// succeed later.
func unavailable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	// A verdict on the request (an op's own ErrNotFound, say) is not the
	// database failing, although it is no SQLite error.
	if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrExists) || errors.Is(err, storage.ErrInvalid) ||
		errors.Is(err, storage.ErrPushTokenTaken) {
		return false
	}
	var se *sqlitedrv.Error
	if !errors.As(err, &se) {
		// Not a result from SQLite: database/sql's own (a closed pool, a
		// broken connection) or the file system's.
		return true
	}
	switch se.Code() & 0xff { // the primary result code
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_READONLY,
		sqlite3.SQLITE_INTERRUPT, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_FULL,
		sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PROTOCOL, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_PERM:
		return true
	}
	return false
}

// reading returns the context of one read, or ErrClosed.
func (s *Store) reading(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if s.isClosed.Load() {
		return nil, nil, storage.ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
	return ctx, cancel, nil
}

// readErr classifies the error of a read; a read that raced Close fails with
// ErrClosed.
func (s *Store) readErr(err error) error {
	if s.isClosed.Load() && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: %w", storage.ErrClosed, err)
	}
	return classify(err)
}

// readStmts are the reads, prepared once; database/sql prepares each again
// on every reader connection that runs it.
type readStmts struct {
	getUser, tokenUser, read, readBefore, lastSeq, getCursor *sql.Stmt
}

const entryColumns = "inbox, seq, id, sender, recipient, ts, kind, cid, data"

func prepareReads(ctx context.Context, db *sql.DB) (readStmts, error) {
	var rd readStmts
	for _, p := range []struct {
		stmt  **sql.Stmt
		query string
	}{
		{&rd.getUser, "SELECT id, name, password_hash, created_at, deleted_at FROM users WHERE id = ?"},
		{&rd.tokenUser, "SELECT user_id FROM tokens WHERE hash = ? AND expires_at > ?"},
		{&rd.read, "SELECT " + entryColumns + " FROM entries WHERE inbox = ? AND seq > ? ORDER BY seq LIMIT ?"},
		{&rd.readBefore, "SELECT * FROM (SELECT " + entryColumns +
			" FROM entries WHERE inbox = ? AND seq < ? ORDER BY seq DESC LIMIT ?) ORDER BY seq"},
		{&rd.lastSeq, "SELECT last_seq FROM inboxes WHERE id = ?"},
		{&rd.getCursor, "SELECT seq FROM cursors WHERE client_id = ? AND inbox = ?"},
	} {
		st, err := db.PrepareContext(ctx, p.query)
		if err != nil {
			rd.close() //nolint:errcheck // the Prepare error is the one to report
			return readStmts{}, err
		}
		*p.stmt = st
	}
	return rd, nil
}

func (rd *readStmts) close() error {
	var errs []error
	for _, st := range []*sql.Stmt{rd.getUser, rd.tokenUser, rd.read, rd.readBefore, rd.lastSeq, rd.getCursor} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	return errors.Join(errs...)
}

// CreateUser stores the user and creates its inbox in one transaction.
func (s *Store) CreateUser(ctx context.Context, u storage.User) error {
	if err := u.Check(); err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	if err := s.write(ctx, createUserOp(u)); err != nil {
		return fmt.Errorf("create user: %w", classify(err))
	}
	return nil
}

func createUserOp(u storage.User) func(ctx context.Context, tx *sql.Tx) error {
	return func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "INSERT INTO users (id, name, password_hash, created_at) VALUES (?, ?, ?, ?)",
			u.ID, u.Name, u.PasswordHash, time.Now().UnixMicro()); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO inboxes (id) VALUES (?) ON CONFLICT DO NOTHING", protocol.UserInbox(u.ID))
		return err
	}
}

// GetUser returns a user by id.
func (s *Store) GetUser(ctx context.Context, id string) (storage.User, error) {
	ctx, cancel, err := s.reading(ctx)
	if err != nil {
		return storage.User{}, fmt.Errorf("get user: %w", err)
	}
	defer cancel()
	var u storage.User
	var created int64
	var deleted sql.NullInt64
	if err := s.rd.getUser.QueryRowContext(ctx, id).Scan(&u.ID, &u.Name, &u.PasswordHash, &created, &deleted); err != nil {
		return storage.User{}, fmt.Errorf("get user: %w", s.readErr(err))
	}
	u.CreatedAt = time.UnixMicro(created)
	if deleted.Valid {
		u.DeletedAt = time.UnixMicro(deleted.Int64)
	}
	return u, nil
}

// CreateToken stores a token hash for a user that exists and is not
// deleted.
func (s *Store) CreateToken(ctx context.Context, hash []byte, user string, expires time.Time) error {
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		now := time.Now().UnixMicro()
		res, err := tx.ExecContext(ctx, `INSERT INTO tokens (hash, user_id, created_at, expires_at, last_used_at)
			SELECT ?, id, ?, ?, ? FROM users WHERE id = ? AND deleted_at IS NULL`,
			hash, now, expires.UnixMicro(), now, user)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("user %q: %w", user, storage.ErrNotFound)
		}
		return nil
	})
	if sqliteCode(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY {
		return fmt.Errorf("create token: user: %w", storage.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("create token: %w", classify(err))
	}
	return nil
}

// TokenUser resolves an unexpired token.
func (s *Store) TokenUser(ctx context.Context, hash []byte, now time.Time) (string, error) {
	ctx, cancel, err := s.reading(ctx)
	if err != nil {
		return "", fmt.Errorf("token user: %w", err)
	}
	defer cancel()
	var user string
	if err := s.rd.tokenUser.QueryRowContext(ctx, hash, now.UnixMicro()).Scan(&user); err != nil {
		return "", fmt.Errorf("token user: %w", s.readErr(err))
	}
	return user, nil
}

// DeleteToken revokes a token.
func (s *Store) DeleteToken(ctx context.Context, hash []byte) error {
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "DELETE FROM tokens WHERE hash = ?", hash)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete token: %w", classify(err))
	}
	return nil
}

// scanner is what scanEntry needs of *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

func scanEntry(sc scanner) (protocol.Entry, error) {
	var e protocol.Entry
	var data []byte
	if err := sc.Scan(&e.Inbox, &e.Seq, &e.ID, &e.From, &e.To, &e.TS, &e.Type, &e.Cid, &data); err != nil {
		return protocol.Entry{}, err
	}
	e.Data = data
	return e, nil
}

func scanEntries(rows *sql.Rows) ([]protocol.Entry, error) {
	defer rows.Close()
	var es []protocol.Entry
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, err
		}
		es = append(es, e)
	}
	return es, rows.Err()
}

// Read returns entries after a seq, oldest first.
func (s *Store) Read(ctx context.Context, inbox string, after int64, limit int) ([]protocol.Entry, error) {
	return s.readPage(ctx, "read", s.rd.read, inbox, after, limit)
}

// ReadBefore returns the newest entries below a seq, oldest first.
func (s *Store) ReadBefore(ctx context.Context, inbox string, before int64, limit int) ([]protocol.Entry, error) {
	return s.readPage(ctx, "read before", s.rd.readBefore, inbox, before, limit)
}

func (s *Store) readPage(ctx context.Context, op string, st *sql.Stmt, inbox string, seq int64, limit int) ([]protocol.Entry, error) {
	if limit < 0 {
		// SQLite reads a negative LIMIT as no limit; Postgres refuses it.
		return nil, fmt.Errorf("%s: negative limit %d", op, limit)
	}
	ctx, cancel, err := s.reading(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	defer cancel()
	rows, err := st.QueryContext(ctx, inbox, seq, limit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, s.readErr(err))
	}
	es, err := scanEntries(rows)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, s.readErr(err))
	}
	return es, nil
}

// LastSeq returns the newest seq of an inbox.
func (s *Store) LastSeq(ctx context.Context, inbox string) (int64, error) {
	ctx, cancel, err := s.reading(ctx)
	if err != nil {
		return 0, fmt.Errorf("last seq: %w", err)
	}
	defer cancel()
	var seq int64
	if err := s.rd.lastSeq.QueryRowContext(ctx, inbox).Scan(&seq); err != nil {
		return 0, fmt.Errorf("last seq: %w", s.readErr(err))
	}
	return seq, nil
}

// GetCursor returns a device's cursor in an inbox.
func (s *Store) GetCursor(ctx context.Context, clientID, inbox string) (int64, error) {
	ctx, cancel, err := s.reading(ctx)
	if err != nil {
		return 0, fmt.Errorf("get cursor: %w", err)
	}
	defer cancel()
	var seq int64
	if err := s.rd.getCursor.QueryRowContext(ctx, clientID, inbox).Scan(&seq); err != nil {
		return 0, fmt.Errorf("get cursor: %w", s.readErr(err))
	}
	return seq, nil
}

// SaveCursors upserts cursors; a cursor never moves backwards. Cursors no
// store can hold are dropped, the others saved (SQLite itself would take
// them; Postgres and parley migrate-store could not).
func (s *Store) SaveCursors(ctx context.Context, cs []storage.Cursor) error {
	valid, dropped, why := storage.ValidCursors(cs)
	if len(valid) > 0 {
		err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
			st, err := tx.PrepareContext(ctx, `INSERT INTO cursors (client_id, inbox, seq, updated_at) VALUES (?, ?, ?, ?)
				ON CONFLICT (client_id, inbox) DO UPDATE SET seq = max(cursors.seq, excluded.seq), updated_at = excluded.updated_at`)
			if err != nil {
				return err
			}
			defer st.Close()
			now := time.Now().UnixMicro()
			for _, c := range valid {
				if _, err := st.ExecContext(ctx, c.ClientID, c.Inbox, c.Seq, now); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("save cursors: %w", classify(err))
		}
	}
	if dropped > 0 {
		return fmt.Errorf("save cursors: %w", storage.DroppedCursors(dropped, len(cs), why))
	}
	return nil
}

// skeletonExpr is protocol.IDSkeleton in SQL, as indexed by
// 013_id_skeletons.sql.
const skeletonExpr = `replace(replace(replace(replace(replace(id, '0', 'o'), '1', 'l'), 'i', 'l'), 'rn', 'm'), 'vv', 'w')`

// UsersLike returns the ids whose skeleton is skeleton.
func (s *Store) UsersLike(ctx context.Context, skeleton string) ([]string, error) {
	ctx, cancel, err := s.reading(ctx)
	if err != nil {
		return nil, fmt.Errorf("users like: %w", err)
	}
	defer cancel()
	rows, err := s.rdb.QueryContext(ctx, "SELECT id FROM users WHERE "+skeletonExpr+" = ? ORDER BY id", skeleton)
	if err != nil {
		return nil, fmt.Errorf("users like: %w", s.readErr(err))
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("users like: %w", s.readErr(err))
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("users like: %w", s.readErr(err))
	}
	return ids, nil
}
