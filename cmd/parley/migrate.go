package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/storage/postgres"
	"github.com/parleychat/parley/storage/sqlite"
)

// migrateCommand is the subcommand that copies one store into another.
const migrateCommand = "migrate-store"

// migrateSummary is the line `parley -h` gives the subcommand.
const migrateSummary = `
Commands:
  parley migrate-store -from SOURCE -to TARGET
        copy every user, token, message and cursor into an empty store, e.g. from
        the embedded store to Postgres (parley migrate-store -h for more)
`

// migrateOpTimeout bounds each batch and count: generous, since a copy runs
// alone and its batches are large.
const migrateOpTimeout = 2 * time.Minute

// copyStore is what migrate-store needs of each end.
type copyStore interface {
	storage.Exporter
	storage.Importer
	Close() error
}

// runMigrate runs `parley migrate-store` and returns the exit code: 0 when
// the copy is complete and verified, 1 when it failed, 2 for bad arguments.
func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("parley "+migrateCommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := fs.String("from", "", "the store to copy: a SQLite file, or a postgres:// URL")
	to := fs.String("to", "", "the empty store to fill: a SQLite file (created if missing), or a postgres:// URL (database created if missing)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: parley migrate-store -from SOURCE -to TARGET

Copies everything Parley stores (users, tokens, inboxes and their messages,
idempotency keys, device cursors) from one store to another, verbatim: message
sequence numbers go on where they stopped, and devices resume where they were.
A postgres:// or postgresql:// URL names a Postgres database; anything else is
the path of an embedded (SQLite) store. The target must be empty. Stop Parley
first: nothing may write to the source during the copy.

  parley migrate-store -from data/parley.db -to 'postgres://parley@db:5432/parley?sslmode=disable'

`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "parley %s: unexpected arguments: %v\n", migrateCommand, fs.Args())
		return 2
	case *from == "" || *to == "":
		fmt.Fprintf(stderr, "parley %s: both -from and -to are required (see -h)\n", migrateCommand)
		return 2
	case *from == *to:
		fmt.Fprintf(stderr, "parley %s: -from and -to are the same store\n", migrateCommand)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := migrateStore(ctx, *from, *to, stdout, log); err != nil {
		fmt.Fprintf(stderr, "parley %s: %v\n", migrateCommand, err)
		return 1
	}
	return 0
}

// migrateStore copies the store at from into the empty store at to, printing
// progress to out.
func migrateStore(ctx context.Context, from, to string, out io.Writer, log *slog.Logger) (err error) {
	start := time.Now()
	src, err := openCopyStore(ctx, from, false, log)
	if err != nil {
		return fmt.Errorf("source %s: %w", describeStore(from), err)
	}
	defer src.Close()
	dst, err := openCopyStore(ctx, to, true, log)
	if err != nil {
		return fmt.Errorf("target %s: %w", describeStore(to), err)
	}
	defer func() {
		// Closing the embedded store checkpoints its log into the file: a
		// failure here is a failed copy.
		if cerr := dst.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("target %s: %w", describeStore(to), cerr)
		}
	}()

	fmt.Fprintf(out, "copying %s to %s\n", describeStore(from), describeStore(to))
	var tables int
	var rows, shown int64
	err = storage.Copy(ctx, src, dst, func(p storage.Progress) {
		switch {
		case p.Done:
			fmt.Fprintf(out, "  %-10s %d rows\n", p.Table, p.Rows)
			tables, rows, shown = tables+1, rows+p.Rows, 0
		case p.Rows >= shown+100_000: // a sign of life on large tables
			fmt.Fprintf(out, "  %-10s %d rows so far\n", p.Table, p.Rows)
			shown = p.Rows
		}
	})
	switch {
	case errors.Is(err, storage.ErrTargetNotEmpty):
		return fmt.Errorf("%w; copy into a new SQLite file or a new Postgres database", err)
	case err != nil:
		return fmt.Errorf("%w (the target now holds part of the data: empty it, by dropping the database or removing the file, before trying again)", err)
	}
	fmt.Fprintf(out, "copied %d rows in %d tables in %s; row counts verified\n",
		rows, tables, time.Since(start).Round(time.Millisecond))
	return nil
}

// openCopyStore opens the store named by where: Postgres for a postgres://
// or postgresql:// URL, the embedded store otherwise. A target is created
// when missing; a source must exist.
func openCopyStore(ctx context.Context, where string, target bool, log *slog.Logger) (copyStore, error) {
	if strings.HasPrefix(where, "postgres://") || strings.HasPrefix(where, "postgresql://") {
		if target {
			if err := postgres.CreateDatabase(ctx, where); err != nil {
				return nil, err
			}
		}
		return postgres.Open(ctx, postgres.Config{URL: where, Writers: 1, OpTimeout: migrateOpTimeout}, log)
	}
	if !target {
		// sqlite.Open would create an empty store, and a mistyped path
		// would then copy nothing, successfully.
		if _, err := os.Stat(where); err != nil {
			return nil, err
		}
	}
	return sqlite.Open(ctx, sqlite.Config{Path: where, OpTimeout: migrateOpTimeout}, log)
}

// describeStore names a store for humans, without its password.
func describeStore(where string) string {
	if strings.Contains(where, "://") {
		return redactURL(where)
	}
	return where
}
