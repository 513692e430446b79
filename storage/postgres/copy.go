package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley/storage"
)

// The Postgres store is both ends of storage.Copy: the usual target when a
// team outgrows the embedded store, and a source for a copy back.
var (
	_ storage.Exporter = (*Store)(nil)
	_ storage.Importer = (*Store)(nil)
)

// ExportRows streams every row of t, in no particular order; see
// storage.Exporter. It is one query, so it sees one snapshot of the table, and
// it lasts as long as emit takes: there is no per-operation timeout, ctx
// bounds it.
func (s *Store) ExportRows(ctx context.Context, t storage.Table, emit func(row []any) error) error {
	cols := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cols[i] = pgx.Identifier{c.Name}.Sanitize()
		if c.Kind == storage.KindUUID {
			cols[i] += "::text" // the canonical form, as the embedded store keeps it
		}
	}
	rows, err := s.pool.Query(ctx, "SELECT "+strings.Join(cols, ", ")+" FROM "+pgx.Identifier{t.Name}.Sanitize())
	if err != nil {
		return fmt.Errorf("export %s: %w", t.Name, classify(err))
	}
	defer rows.Close()
	for rows.Next() {
		// pgx decodes text, bigint, bytea and timestamptz to string, int64,
		// a fresh []byte and time.Time: the Go types of the kinds.
		row, err := rows.Values()
		if err != nil {
			return fmt.Errorf("export %s: %w", t.Name, classify(err))
		}
		if err := emit(row); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("export %s: %w", t.Name, classify(err))
	}
	return nil
}

// ImportRows inserts rows into t with one statement, so all or none; see
// storage.Importer. Each column travels as one array parameter and unnest
// turns the arrays back into rows: one round trip per batch, whatever its
// size.
func (s *Store) ImportRows(ctx context.Context, t storage.Table, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	for r, row := range rows {
		if len(row) != len(t.Columns) {
			return fmt.Errorf("import %s: row %d: %d values for %d columns", t.Name, r+1, len(row), len(t.Columns))
		}
	}
	var (
		names   = make([]string, len(t.Columns)) // target columns
		exprs   = make([]string, len(t.Columns)) // the select list, with casts
		arrays  = make([]string, len(t.Columns)) // unnest's arguments
		aliases = make([]string, len(t.Columns))
		args    = make([]any, len(t.Columns))
	)
	for i, c := range t.Columns {
		arg, arrayType, err := pgArray(c, rows, i)
		if err != nil {
			return fmt.Errorf("import %s: %w", t.Name, err)
		}
		alias := fmt.Sprintf("c%d", i)
		names[i] = pgx.Identifier{c.Name}.Sanitize()
		exprs[i] = alias
		if c.Kind == storage.KindUUID {
			exprs[i] += "::uuid" // sent as text: the canonical form parses back exactly
		}
		arrays[i] = fmt.Sprintf("$%d::%s", i+1, arrayType)
		aliases[i] = alias
		args[i] = arg
	}
	query := "INSERT INTO " + pgx.Identifier{t.Name}.Sanitize() + " (" + strings.Join(names, ", ") + ") SELECT " +
		strings.Join(exprs, ", ") + " FROM unnest(" + strings.Join(arrays, ", ") + ") AS r (" + strings.Join(aliases, ", ") + ")"
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	if _, err := s.pool.Exec(ctx, query, args...); err != nil {
		return fmt.Errorf("import %s: %w", t.Name, classify(err))
	}
	return nil
}

// pgArray gathers column i of rows into a Go slice that pgx sends as an
// array, and returns it with the array's type. A nil pointer (or nil []byte)
// is a NULL.
func pgArray(c storage.Column, rows [][]any, i int) (any, string, error) {
	bad := func(r int, v any) error {
		return fmt.Errorf("row %d: column %s: %T is not of kind %s", r+1, c.Name, v, c.Kind)
	}
	null := func(r int) error {
		if c.Null {
			return nil
		}
		return fmt.Errorf("row %d: column %s: NULL in a NOT NULL column", r+1, c.Name)
	}
	switch c.Kind {
	case storage.KindText, storage.KindUUID:
		out := make([]*string, len(rows))
		for r, row := range rows {
			switch v := row[i].(type) {
			case string:
				out[r] = &v
			case nil:
				if err := null(r); err != nil {
					return nil, "", err
				}
			default:
				return nil, "", bad(r, v)
			}
		}
		return out, "text[]", nil
	case storage.KindInt:
		out := make([]*int64, len(rows))
		for r, row := range rows {
			switch v := row[i].(type) {
			case int64:
				out[r] = &v
			case nil:
				if err := null(r); err != nil {
					return nil, "", err
				}
			default:
				return nil, "", bad(r, v)
			}
		}
		return out, "bigint[]", nil
	case storage.KindBytes:
		out := make([][]byte, len(rows))
		for r, row := range rows {
			switch v := row[i].(type) {
			case []byte:
				if v == nil && !c.Null {
					v = []byte{} // the column is NOT NULL, and pgx sends nil as NULL
				}
				out[r] = v
			case nil:
				if err := null(r); err != nil {
					return nil, "", err
				}
			default:
				return nil, "", bad(r, v)
			}
		}
		return out, "bytea[]", nil
	case storage.KindTime:
		out := make([]*time.Time, len(rows))
		for r, row := range rows {
			switch v := row[i].(type) {
			case time.Time:
				out[r] = &v
			case nil:
				if err := null(r); err != nil {
					return nil, "", err
				}
			default:
				return nil, "", bad(r, v)
			}
		}
		return out, "timestamptz[]", nil
	}
	return nil, "", fmt.Errorf("column %s: unknown kind %s", c.Name, c.Kind)
}

// CountRows returns the number of rows of t.
func (s *Store) CountRows(ctx context.Context, t storage.Table) (int64, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var n int64
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{t.Name}.Sanitize()).Scan(&n); err != nil {
		return 0, fmt.Errorf("count %s: %w", t.Name, classify(err))
	}
	return n, nil
}
