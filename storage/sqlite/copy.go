package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/parleychat/parley/storage"
)

// The embedded store is both ends of storage.Copy: the usual source when a
// team moves to Postgres, and a target for a copy back. Rows keep the column
// types of the schema; only time changes form (time.Time here, INTEGER Unix
// microseconds on disk).
var (
	_ storage.Exporter = (*Store)(nil)
	_ storage.Importer = (*Store)(nil)
)

// ExportRows streams every row of t, in no particular order; see
// storage.Exporter. It is one query on one read connection, so it sees one
// snapshot of the table, and it lasts as long as emit takes: there is no
// per-operation timeout, ctx bounds it.
func (s *Store) ExportRows(ctx context.Context, t storage.Table, emit func(row []any) error) error {
	if s.isClosed.Load() {
		return fmt.Errorf("export %s: %w", t.Name, storage.ErrClosed)
	}
	rows, err := s.rdb.QueryContext(ctx, "SELECT "+columnList(t)+" FROM "+quote(t.Name))
	if err != nil {
		return fmt.Errorf("export %s: %w", t.Name, s.readErr(err))
	}
	defer rows.Close()
	for rows.Next() {
		raw := make([]any, len(t.Columns))
		ptrs := make([]any, len(raw))
		for i := range raw {
			ptrs[i] = &raw[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return fmt.Errorf("export %s: %w", t.Name, s.readErr(err))
		}
		for i, c := range t.Columns {
			// Times are INTEGER microseconds on disk; every other kind
			// comes out of the driver as its Go type (string, int64,
			// []byte) or nil.
			if us, ok := raw[i].(int64); ok && c.Kind == storage.KindTime {
				raw[i] = time.UnixMicro(us).UTC()
			}
		}
		if err := emit(raw); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("export %s: %w", t.Name, s.readErr(err))
	}
	return nil
}

// ImportRows inserts rows into t in one transaction of the writer; see
// storage.Importer.
func (s *Store) ImportRows(ctx context.Context, t storage.Table, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	args := make([][]any, len(rows))
	for r, row := range rows {
		if len(row) != len(t.Columns) {
			return fmt.Errorf("import %s: row %d: %d values for %d columns", t.Name, r+1, len(row), len(t.Columns))
		}
		args[r] = make([]any, len(row))
		for i, c := range t.Columns {
			v, err := sqliteValue(c, row[i])
			if err != nil {
				return fmt.Errorf("import %s: row %d: %w", t.Name, r+1, err)
			}
			args[r][i] = v
		}
	}
	query := "INSERT INTO " + quote(t.Name) + " (" + columnList(t) + ") VALUES (" +
		strings.TrimSuffix(strings.Repeat("?, ", len(t.Columns)), ", ") + ")"
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, query)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, a := range args {
			if _, err := st.ExecContext(ctx, a...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("import %s: %w", t.Name, classify(err))
	}
	return nil
}

// sqliteValue converts a value of c's kind to what the column stores.
func sqliteValue(c storage.Column, v any) (any, error) {
	if v == nil {
		if !c.Null {
			return nil, fmt.Errorf("column %s: NULL in a NOT NULL column", c.Name)
		}
		return nil, nil
	}
	ok := false
	switch c.Kind {
	case storage.KindText, storage.KindUUID:
		_, ok = v.(string)
	case storage.KindInt:
		_, ok = v.(int64)
	case storage.KindBytes:
		var b []byte
		if b, ok = v.([]byte); ok && b == nil && !c.Null {
			v = []byte{} // the column is NOT NULL
		}
	case storage.KindTime:
		var tm time.Time
		if tm, ok = v.(time.Time); ok {
			v = tm.UnixMicro()
		}
	}
	if !ok {
		return nil, fmt.Errorf("column %s: %T is not of kind %s", c.Name, v, c.Kind)
	}
	return v, nil
}

// CountRows returns the number of rows of t.
func (s *Store) CountRows(ctx context.Context, t storage.Table) (int64, error) {
	ctx, cancel, err := s.reading(ctx)
	if err != nil {
		return 0, fmt.Errorf("count %s: %w", t.Name, err)
	}
	defer cancel()
	var n int64
	if err := s.rdb.QueryRowContext(ctx, "SELECT count(*) FROM "+quote(t.Name)).Scan(&n); err != nil {
		return 0, fmt.Errorf("count %s: %w", t.Name, s.readErr(err))
	}
	return n, nil
}

func columnList(t storage.Table) string {
	names := t.ColumnNames()
	for i, n := range names {
		names[i] = quote(n)
	}
	return strings.Join(names, ", ")
}

// quote quotes an identifier. Names come from storage.CopyTables, never from
// input; quoting keeps a name that happens to be a keyword working.
func quote(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }
