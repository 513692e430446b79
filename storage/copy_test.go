package storage_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/storage"
)

// memStore is an Exporter and Importer over rows in memory, recording the
// batches it imports.
type memStore struct {
	rows    map[string][][]any
	batches []string // "table:size", in import order
	// drop, if set,, makes ImportRows lose the last row of each batch.
	drop bool
}

func newMem() *memStore { return &memStore{rows: map[string][][]any{}} }

func (m *memStore) ExportRows(ctx context.Context, t storage.Table, emit func([]any) error) error {
	for _, r := range m.rows[t.Name] {
		if err := emit(slices.Clone(r)); err != nil {
			return err
		}
	}
	return nil
}

func (m *memStore) ImportRows(ctx context.Context, t storage.Table, rows [][]any) error {
	m.batches = append(m.batches, fmt.Sprintf("%s:%d", t.Name, len(rows)))
	if m.drop {
		rows = rows[:len(rows)-1]
	}
	for _, r := range rows {
		m.rows[t.Name] = append(m.rows[t.Name], slices.Clone(r))
	}
	return nil
}

func (m *memStore) CountRows(ctx context.Context, t storage.Table) (int64, error) {
	return int64(len(m.rows[t.Name])), nil
}

// fill gives every table n rows of valid values.
func (m *memStore) fill(n int) {
	for _, t := range storage.CopyTables() {
		for i := range n {
			row := make([]any, len(t.Columns))
			for j, c := range t.Columns {
				switch c.Kind {
				case storage.KindText, storage.KindUUID:
					row[j] = fmt.Sprintf("%s-%d", c.Name, i)
				case storage.KindInt:
					row[j] = int64(i)
				case storage.KindBytes:
					row[j] = []byte(nil) // an empty blob, as a driver may read it
				case storage.KindTime:
					row[j] = time.UnixMicro(int64(i))
				}
			}
			m.rows[t.Name] = append(m.rows[t.Name], row)
		}
	}
}

func TestCopy(t *testing.T) {
	src, dst := newMem(), newMem()
	src.fill(2500)
	var done []string
	err := storage.Copy(context.Background(), src, dst, func(p storage.Progress) {
		if p.Done {
			done = append(done, fmt.Sprintf("%s:%d", p.Table, p.Rows))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	var want, wantBatches []string
	for _, tb := range storage.CopyTables() {
		want = append(want, tb.Name+":2500")
		wantBatches = append(wantBatches, tb.Name+":1000", tb.Name+":1000", tb.Name+":500")
		for i, r := range dst.rows[tb.Name] {
			for j, c := range tb.Columns {
				// A nil blob in a NOT NULL column arrives empty; in a
				// nullable one (push_devices.session) it stays NULL.
				if b, ok := r[j].([]byte); c.Kind == storage.KindBytes && !c.Null && (!ok || b == nil) {
					t.Fatalf("%s row %d: %s = %#v, want an empty []byte", tb.Name, i, c.Name, r[j])
				}
			}
		}
	}
	if !slices.Equal(done, want) {
		t.Errorf("tables done: %v, want %v", done, want)
	}
	if !slices.Equal(dst.batches, wantBatches) {
		t.Errorf("batches: %v, want %v", dst.batches, wantBatches)
	}
}

func TestCopyBatchesLargeRowsByBytes(t *testing.T) {
	src, dst := newMem(), newMem()
	big := make([]byte, 1<<20)
	for i := range 10 {
		src.rows["entries"] = append(src.rows["entries"], []any{"u/a", int64(i + 1),
			"7f1c7c9e-4a4e-4b8e-9a43-0d6f7c1f2a11", "a", "b", int64(0), "msg", "", big, "b"})
	}
	if err := storage.Copy(context.Background(), src, dst, nil); err != nil {
		t.Fatal(err)
	}
	if want := []string{"entries:4", "entries:4", "entries:2"}; !slices.Equal(dst.batches, want) {
		t.Errorf("batches: %v, want %v", dst.batches, want)
	}
}

func TestCopyRefusesNonEmptyTarget(t *testing.T) {
	src, dst := newMem(), newMem()
	src.fill(3)
	dst.rows["cursors"] = [][]any{{"c", "u/a", int64(1), time.Now()}}
	err := storage.Copy(context.Background(), src, dst, nil)
	if !errors.Is(err, storage.ErrTargetNotEmpty) || !strings.Contains(err.Error(), "cursors has 1 rows") {
		t.Fatalf("err = %v, want ErrTargetNotEmpty naming cursors", err)
	}
	if len(dst.batches) != 0 {
		t.Fatalf("imported %v into a non-empty target", dst.batches)
	}
}

func TestCopyErrors(t *testing.T) {
	cases := map[string]struct {
		row  []any
		drop bool
		want string
	}{
		"short row":       {row: []any{"u/a"}, want: "inboxes: export: row 1: 1 values for 2 columns"},
		"wrong type":      {row: []any{"u/a", "7"}, want: "column last_seq: string is not of kind int"},
		"null":            {row: []any{nil, int64(0)}, want: "column id: NULL in a NOT NULL column"},
		"rows lost":       {row: []any{"u/a", int64(0)}, drop: true, want: "verify: table inboxes: copied 1 rows, but the source has 1 and the target 0"},
		"valid (control)": {row: []any{"u/a", int64(0)}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			src, dst := newMem(), newMem()
			dst.drop = c.drop
			src.rows["inboxes"] = [][]any{c.row}
			err := storage.Copy(context.Background(), src, dst, nil)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
		})
	}
}

// TestCopyTables: names are unique, tables have columns, kinds are known.
func TestCopyTables(t *testing.T) {
	seen := map[string]bool{}
	for _, tb := range storage.CopyTables() {
		if seen[tb.Name] || len(tb.Columns) == 0 {
			t.Errorf("table %q: repeated or without columns", tb.Name)
		}
		seen[tb.Name] = true
		cols := map[string]bool{}
		for _, c := range tb.Columns {
			if cols[c.Name] || strings.HasPrefix(c.Kind.String(), "Kind(") {
				t.Errorf("%s.%s: repeated column or unknown kind %v", tb.Name, c.Name, c.Kind)
			}
			cols[c.Name] = true
		}
	}
}
