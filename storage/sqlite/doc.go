// Package sqlite is Parley's embedded store: storage.Store on one SQLite file,
// through the pure-Go driver modernc.org/sqlite (no cgo). It needs no database
// server, which makes it the store for a single-node Parley, for development
// and for tests; it passes the same contract suite (storage/storetest) as the
// Postgres store.
//
// # One writer
//
// SQLite allows one writing transaction at a time per database, so the store
// does not pretend otherwise: every write (appends, and the rarer user, token
// and cursor writes) is queued to a single writer, a group-commit engine
// (storage/groupcommit, the same as the Postgres store's) that owns the one
// write connection. The writer takes everything queued, up to
// Config.MaxBatch, runs it in one IMMEDIATE transaction and answers each
// caller after the COMMIT. While one transaction syncs, the next batch
// gathers, so the cost of the fsync is shared by all the writes that arrived
// meanwhile: throughput grows with concurrent senders while each caller still
// returns only once its write is on disk.
//
// Because one goroutine numbers every entry, a per-inbox counter
// (inboxes.last_seq) read and bumped inside the transaction keeps sequences
// gapless without row locks; a failed transaction rolls its numbers back with
// it. A repeated idempotency key (sender, inbox, cid) is looked up inside
// the transaction, so a repeat finds the first copy whether that committed
// long ago or a moment earlier in the same batch. A write that fails on its own (a taken user id,
// an inbox that does not exist) is undone alone and the batch goes on. When
// something breaks the whole transaction, the engine splits the batch and
// commits the halves apart, down to the culprit, which fails alone; only
// errors of the database itself (I/O, a full disk, a lock held too long) fail
// a whole batch. Values SQLite would hold but Postgres could not (a NUL, a
// key over storage.MaxKeyBytes) are refused with storage.ErrInvalid before
// they are queued, so that the file always copies to Postgres.
//
// Reads use a separate pool of read-only connections (Config.Readers). In WAL
// mode readers see every transaction committed before they start and never
// wait for the writer, nor it for them.
//
// # Durability
//
// The database runs in WAL mode with synchronous=FULL: COMMIT returns only
// after the write-ahead log is fsynced (F_FULLFSYNC on macOS), so an Append
// that returned survives a killed process and a power loss, which is what
// Parley's PUBACK promises. The directory is synced when the database file or
// its directory is created. A process killed mid-transaction leaves a WAL
// that the next Open recovers; uncommitted writes vanish whole.
//
// Back up with SQLite's backup API or VACUUM INTO, or copy the file together
// with its -wal file while the store is closed.
//
// # When to move to Postgres
//
// Move to storage/postgres when one node is no longer enough: when Parley
// must run on several nodes (SQLite is one file on one machine), when write
// throughput needs more than one fsync-bound writer (the benchmark in this
// package measures it on your disk), when the database outgrows one disk or
// needs replicas, point-in-time recovery or online schema changes, or when
// other services must query it. The schema is the same in both stores, table
// for table and column for column (timestamps here are Unix microseconds), so
// moving is a copy of the tables (see parley migrate-store).
package sqlite
