package storage

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Copying a whole store (parley migrate-store) goes through a seam of its
// own, narrower than Store: the Store API speaks in messages and would
// renumber, re-stamp and re-deduplicate them, while a copy must move rows
// verbatim so that sequences, timestamps and idempotency keys carry on exactly
// where the source left off. Copy drives it; each store implements Exporter
// and Importer over the tables listed in CopyTables, generically, with no code
// per table.

// ErrTargetNotEmpty: Copy refuses a target that already holds rows.
var ErrTargetNotEmpty = errors.New("target store is not empty")

// Kind is the type of a copied column, the same in every store. Each Kind has
// one Go type that Exporters emit and Importers accept, whatever the column
// type of the database.
type Kind int

// The kinds of column, with their Go type and their column type in each store.
const (
	// KindText is a string: text in Postgres, TEXT in SQLite.
	KindText Kind = iota + 1
	// KindInt is an int64: bigint in Postgres, INTEGER in SQLite.
	KindInt
	// KindBytes is a []byte: bytea in Postgres, BLOB in SQLite.
	KindBytes
	// KindTime is a time.Time with microsecond precision: timestamptz in
	// Postgres, INTEGER Unix microseconds in SQLite.
	KindTime
	// KindUUID is a string in the canonical 36-character form: uuid in
	// Postgres, TEXT in SQLite.
	KindUUID
)

func (k Kind) String() string {
	switch k {
	case KindText:
		return "text"
	case KindInt:
		return "int"
	case KindBytes:
		return "bytes"
	case KindTime:
		return "time"
	case KindUUID:
		return "uuid"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Column is one column of a copied table.
type Column struct {
	Name string // the same in every store
	Kind Kind
	// Null allows SQL NULL, carried as a nil value. Without it a nil value is
	// an error (a nil []byte is read as an empty one).
	Null bool
}

// Table is a table that Copy moves: its name, the same in every store, and
// the columns it copies, in the order in which rows carry their values.
type Table struct {
	Name    string
	Columns []Column
}

// ColumnNames returns the names of t's columns, in order.
func (t Table) ColumnNames() []string {
	names := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		names[i] = c.Name
	}
	return names
}

// CopyTables returns every table that holds Parley's data, parents before the
// tables whose foreign keys point at them: the order in which Copy fills a
// target.
//
// To add a table: give it a migration in both stores (storage/postgres and
// storage/sqlite, the same name and columns in each), then add one entry
// here, after the tables it references, listing every column with its Kind
// (and Null where the column allows NULL).
// Nothing else changes: both stores copy any listed table generically. The
// test in storage/storecopy fails while a table or column of either schema is
// missing from this list, so a forgotten entry cannot silently lose data.
//
// schema_migrations is not copied: each store writes its own when it opens.
func CopyTables() []Table {
	text := func(name string) Column { return Column{Name: name, Kind: KindText} }
	integer := func(name string) Column { return Column{Name: name, Kind: KindInt} }
	bytes := func(name string) Column { return Column{Name: name, Kind: KindBytes} }
	timestamp := func(name string) Column { return Column{Name: name, Kind: KindTime} }
	id := func(name string) Column { return Column{Name: name, Kind: KindUUID} }
	return []Table{
		// 001_init.sql
		{Name: "users", Columns: []Column{text("id"), text("name"), text("password_hash"), timestamp("created_at"),
			{Name: "deleted_at", Kind: KindTime, Null: true}}},
		{Name: "tokens", Columns: []Column{bytes("hash"), text("user_id"), timestamp("created_at"), timestamp("expires_at"),
			timestamp("last_used_at"), text("last_addr"), text("last_agent"), text("last_client")}},
		// Copied verbatim, last_seq included, so that the target's inboxes
		// go on numbering where the source's stopped. (In normal operation
		// CreateUser makes a user's inbox; Copy inserts rows, not users.)
		{Name: "inboxes", Columns: []Column{text("id"), integer("last_seq")}},
		{Name: "entries", Columns: []Column{text("inbox"), integer("seq"), id("id"), text("sender"),
			text("recipient"), integer("ts"), text("kind"), text("cid"), bytes("data"), text("conv")}},
		// The key is (sender, inbox, cid) since 011_dedup_inbox.sql.
		{Name: "dedup", Columns: []Column{text("sender"), text("inbox"), text("cid"), id("id")}},
		{Name: "cursors", Columns: []Column{text("client_id"), text("inbox"), integer("seq"), timestamp("updated_at")}},
		// 002_groups.sql (012_group_history.sql adds groups.history and
		// group_members.from_seq)
		{Name: "groups", Columns: []Column{text("id"), text("name"), text("owner"), timestamp("created_at"), text("history")}},
		{Name: "group_members", Columns: []Column{text("group_id"), text("user_id"), text("role"), timestamp("added_at"),
			{Name: "removed_seq", Kind: KindInt, Null: true}, integer("from_seq")}},
		{Name: "contacts", Columns: []Column{text("user_id"), text("peer"), integer("last_ts")}},
		// 003_presence.sql
		{Name: "presence", Columns: []Column{text("user_id"), {Name: "last_seen", Kind: KindTime, Null: true}, text("privacy")}},
		// 004_reads.sql (adds entries.conv, above)
		{Name: "read_cursors", Columns: []Column{text("user_id"), text("inbox"), text("conv"), integer("seq"), timestamp("updated_at")}},
		// 005_push.sql
		{Name: "push_devices", Columns: []Column{text("token"), text("user_id"), text("platform"), text("environment"),
			text("device"), timestamp("updated_at"), {Name: "session", Kind: KindBytes, Null: true}}},
		{Name: "push_settings", Columns: []Column{text("user_id"), integer("preview")}},
		{Name: "push_mutes", Columns: []Column{text("user_id"), text("conv"), {Name: "until", Kind: KindTime, Null: true}}},
		{Name: "push_jobs", Columns: []Column{id("id"), text("inbox"), integer("seq"), text("sender"), text("recipient"),
			integer("ts"), bytes("data"), integer("lease_until")}},
		// 006_push_acks.sql
		{Name: "push_acks", Columns: []Column{id("msg_id"), text("user_id"), timestamp("at")}},
		// 007_deliveries.sql
		{Name: "deliveries", Columns: []Column{id("msg_id"), text("user_id"), timestamp("at")}},
		// 008_sessions.sql adds columns to users and tokens (above);
		// 010_push_sessions.sql adds push_devices.session (above).
		// 009_consent.sql
		{Name: "blocks", Columns: []Column{text("user_id"), text("peer"), timestamp("created_at")}},
		{Name: "contact_list", Columns: []Column{text("user_id"), text("peer"), timestamp("created_at")}},
		{Name: "consent", Columns: []Column{text("user_id"), text("group_adds")}},
	}
}

// Exporter reads whole tables of a store, for Copy.
type Exporter interface {
	// ExportRows calls emit with every row of t, values in the order of
	// t.Columns and of the Go types of their kinds. emit may keep the row.
	// An error from emit stops the export and is returned.
	ExportRows(ctx context.Context, t Table, emit func(row []any) error) error
	// CountRows returns the number of rows of t.
	CountRows(ctx context.Context, t Table) (int64, error)
}

// Importer writes rows into the tables of a store, for Copy.
type Importer interface {
	// ImportRows inserts rows into t as they are, all or none; values are in
	// the order of t.Columns and of the Go types of their kinds. It bypasses
	// the Store API: no inbox is created, no seq given out, no default
	// applied.
	ImportRows(ctx context.Context, t Table, rows [][]any) error
	// CountRows returns the number of rows of t.
	CountRows(ctx context.Context, t Table) (int64, error)
}

// Progress is what Copy reports as it goes.
type Progress struct {
	Table string
	Rows  int64 // rows of Table copied so far
	Done  bool  // Table is complete
}

// Batches: Copy hands an Importer at most copyBatchRows rows, or fewer once
// they hold copyBatchBytes of strings and bytes, so that a table of large
// payloads does not sit in memory, or in one statement, whole.
const (
	copyBatchRows  = 1000
	copyBatchBytes = 4 << 20
)

// Copy copies every table of CopyTables from one store to another, in order,
// in batches, and then checks that source and target hold as many rows per
// table. It refuses a target that holds any row (ErrTargetNotEmpty, naming
// the table). progress, if not nil, hears after every batch and at the end of
// every table.
//
// Copy is not one transaction: a copy that fails leaves part of the data in
// the target, which must be emptied (the database dropped, the file removed)
// before trying again. Nothing may write to the source meanwhile; if it does,
// the final check fails.
func Copy(ctx context.Context, from Exporter, to Importer, progress func(Progress)) error {
	if progress == nil {
		progress = func(Progress) {}
	}
	tables := CopyTables()
	for _, t := range tables {
		n, err := to.CountRows(ctx, t)
		if err != nil {
			return fmt.Errorf("copy: target: count %s: %w", t.Name, err)
		}
		if n > 0 {
			return fmt.Errorf("copy: %w: table %s has %d rows", ErrTargetNotEmpty, t.Name, n)
		}
	}
	copied := make([]int64, len(tables))
	for i, t := range tables {
		n, err := copyTable(ctx, from, to, t, progress)
		if err != nil {
			return fmt.Errorf("copy: %s: %w", t.Name, err)
		}
		copied[i] = n
		progress(Progress{Table: t.Name, Rows: n, Done: true})
	}
	for i, t := range tables {
		src, err := from.CountRows(ctx, t)
		if err != nil {
			return fmt.Errorf("copy: verify: source: count %s: %w", t.Name, err)
		}
		dst, err := to.CountRows(ctx, t)
		if err != nil {
			return fmt.Errorf("copy: verify: target: count %s: %w", t.Name, err)
		}
		if src != copied[i] || dst != copied[i] {
			return fmt.Errorf("copy: verify: table %s: copied %d rows, but the source has %d and the target %d"+
				" (was the source written to during the copy?)", t.Name, copied[i], src, dst)
		}
	}
	return nil
}

// copyTable streams one table from one store to the other and returns the
// number of rows copied.
func copyTable(ctx context.Context, from Exporter, to Importer, t Table, progress func(Progress)) (int64, error) {
	var (
		total int64
		batch = make([][]any, 0, copyBatchRows)
		size  int
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := to.ImportRows(ctx, t, batch); err != nil {
			return fmt.Errorf("import: %w", err)
		}
		total += int64(len(batch))
		progress(Progress{Table: t.Name, Rows: total})
		batch, size = batch[:0], 0
		return nil
	}
	err := from.ExportRows(ctx, t, func(row []any) error {
		n, err := checkRow(t, row)
		if err != nil {
			return fmt.Errorf("row %d: %w", total+int64(len(batch))+1, err)
		}
		batch = append(batch, row)
		size += n
		if len(batch) >= copyBatchRows || size >= copyBatchBytes {
			return flush()
		}
		return nil
	})
	if err != nil {
		return total, fmt.Errorf("export: %w", err)
	}
	if err := flush(); err != nil {
		return total, err
	}
	return total, nil
}

// checkRow checks that row fits t: as many values as columns, each of the Go
// type of its column's kind, nil only where NULL is allowed. It replaces a
// nil []byte in a NOT NULL column by an empty one (drivers read an empty
// blob either way) and returns the size of the row's strings and bytes.
func checkRow(t Table, row []any) (int, error) {
	if len(row) != len(t.Columns) {
		return 0, fmt.Errorf("%d values for %d columns", len(row), len(t.Columns))
	}
	size := 0
	for i, c := range t.Columns {
		v := row[i]
		if b, ok := v.([]byte); ok && b == nil && !c.Null {
			row[i] = []byte{}
			continue
		}
		if v == nil {
			if c.Null {
				continue
			}
			return 0, fmt.Errorf("column %s: NULL in a NOT NULL column", c.Name)
		}
		ok := false
		switch c.Kind {
		case KindText, KindUUID:
			var s string
			s, ok = v.(string)
			size += len(s)
		case KindInt:
			_, ok = v.(int64)
		case KindBytes:
			var b []byte
			b, ok = v.([]byte)
			size += len(b)
		case KindTime:
			_, ok = v.(time.Time)
		}
		if !ok {
			return 0, fmt.Errorf("column %s: %T is not of kind %s", c.Name, v, c.Kind)
		}
	}
	return size, nil
}
