// Package storecopy_test tests storage.Copy between the real stores, in every
// direction, and checks that storage.CopyTables covers both schemas: a table
// or column added by a migration but not to the list fails here.
package storecopy_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/goleak"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/storage/postgres"
	"github.com/parleychat/parley/storage/postgres/pgtest"
	"github.com/parleychat/parley/storage/sqlite"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// store is what a copy needs of both ends.
type store interface {
	storage.Store
	storage.Exporter
	storage.Importer
}

// backends open a fresh, empty store of each kind, closed when the test ends.
var backends = []struct {
	name string
	open func(t *testing.T) store
}{
	{"sqlite", openSQLite},
	{"postgres", openPostgres},
}

func openSQLite(t *testing.T) store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "parley.db")}, testLog(t))
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openPostgres(t *testing.T) store {
	t.Helper()
	s, err := postgres.Open(context.Background(), postgres.Config{URL: pgtest.NewDatabase(t)}, testLog(t))
	if err != nil {
		t.Fatalf("postgres.Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// fixture is what fill stored, for check to find in the copy.
type fixture struct {
	users   []string
	tokens  map[string]string // token secret → its user; "" for an expired token
	cursors []storage.Cursor
	dup     storage.Message // a message stored with a cid, to send again
	// deliveries were recorded: recorded again in the copy, none is a first.
	deliveries []storage.Delivery
}

func hash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

func dm(from, to, cid string, data []byte) storage.Message {
	return storage.Message{
		ID: uuid.NewString(), From: from, To: to, TS: time.Now().UnixMilli(), Type: protocol.TypeMsg,
		Cid: cid, Data: data, Inboxes: []string{protocol.UserInbox(to), protocol.UserInbox(from)},
	}
}

// messages is enough DMs for their 2 copies to fill more than one batch.
const messages = 600

// fill stores users, tokens, DMs (most with cids, some empty), a receipt and
// cursors through the Store API.
func fill(t *testing.T, s store) fixture {
	t.Helper()
	fx := fixture{users: []string{"alice", "bob", "carol"}, tokens: map[string]string{}}
	for _, u := range fx.users {
		if err := s.CreateUser(ctx(t), storage.User{ID: u, Name: "User " + u, PasswordHash: "$2a$10$" + u}); err != nil {
			t.Fatalf("CreateUser(%s): %v", u, err)
		}
	}
	for secret, tok := range map[string]struct {
		user string
		ttl  time.Duration
	}{"tok-alice": {"alice", time.Hour}, "tok-bob": {"bob", time.Hour}, "tok-carol-old": {"carol", -time.Hour}} {
		if err := s.CreateToken(ctx(t), hash(secret), tok.user, time.Now().Add(tok.ttl)); err != nil {
			t.Fatalf("CreateToken: %v", err)
		}
		if tok.ttl > 0 {
			fx.tokens[secret] = tok.user
		} else {
			fx.tokens[secret] = ""
		}
	}
	// 008_sessions.sql: a token's last use, and a deleted account's
	// tombstone (users.deleted_at set; the others' is NULL).
	if err := s.TouchTokens(ctx(t), []storage.TokenUse{{Hash: hash("tok-alice"), At: time.Now(), Addr: "192.0.2.1",
		Agent: "app/1.0", Client: "alice/phone"}}, time.Hour, 2*time.Hour); err != nil {
		t.Fatalf("TouchTokens: %v", err)
	}
	// 010_push_sessions.sql: a push token bound to its session, and one
	// bound to none (NULL).
	for _, d := range []storage.PushDevice{
		{Token: "push-alice", User: "alice", Platform: "apns", Environment: "sandbox", Session: hash("tok-alice")},
		{Token: "push-bob", User: "bob", Platform: "fcm"},
	} {
		if err := s.PutPushDevice(ctx(t), d, 0); err != nil {
			t.Fatalf("PutPushDevice(%s): %v", d.Token, err)
		}
	}
	if err := s.CreateUser(ctx(t), storage.User{ID: "dave", Name: "User dave", PasswordHash: "$2a$10$dave"}); err != nil {
		t.Fatalf("CreateUser(dave): %v", err)
	}
	if _, err := s.DeleteUser(ctx(t), "dave", time.Now()); err != nil {
		t.Fatalf("DeleteUser(dave): %v", err)
	}

	// Concurrent senders, so that the stores group-commit them.
	pairs := [][2]string{{"alice", "bob"}, {"bob", "alice"}, {"carol", "alice"}}
	var wg sync.WaitGroup
	errs := make(chan error, messages)
	sem := make(chan struct{}, 16)
	for i := range messages {
		p := pairs[i%len(pairs)]
		cid, data := fmt.Sprintf("cid-%d", i), []byte(fmt.Sprintf(`{"text":"message %d"}`, i))
		if i%5 == 0 {
			cid = "" // not idempotent
		}
		if i%7 == 0 {
			// An empty payload. (Not nil: the Postgres store's Append
			// sends nil as NULL and fails, where the embedded one stores
			// an empty blob.)
			data = []byte{}
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if _, _, err := s.Append(context.Background(), dm(p[0], p[1], cid, data)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Append: %v", err)
	}

	fx.dup = dm("alice", "bob", "the-cid", []byte(`{"text":"once"}`))
	first, _, err := s.Append(ctx(t), fx.dup)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	receipt := storage.Message{ID: uuid.NewString(), From: "bob", To: "alice", TS: time.Now().UnixMilli(),
		Type: protocol.TypeReceipt, Cid: "the-cid", Data: []byte(`{"seq":` + fmt.Sprint(first[0].Seq) + `}`),
		Inboxes: []string{protocol.UserInbox("alice")}}
	if _, _, err := s.Append(ctx(t), receipt); err != nil {
		t.Fatalf("Append receipt: %v", err)
	}

	fx.cursors = []storage.Cursor{
		{ClientID: "alice-phone", Inbox: "u/alice", Seq: 17},
		{ClientID: "alice-laptop", Inbox: "u/alice", Seq: 3},
		{ClientID: "bob-phone", Inbox: "u/bob", Seq: 42},
	}
	if err := s.SaveCursors(ctx(t), fx.cursors); err != nil {
		t.Fatalf("SaveCursors: %v", err)
	}
	fx.deliveries = []storage.Delivery{{ID: first[0].ID, User: "bob", Inbox: "u/bob"},
		{ID: uuid.Must(uuid.NewV7()).String(), User: "carol", Inbox: "g/g1"}}
	if _, _, err := s.RecordDeliveries(ctx(t), fx.deliveries); err != nil {
		t.Fatalf("RecordDeliveries: %v", err)
	}
	fillRaw(t, s)
	return fx
}

// fillRaw stores rows in the tables that the Store API does not reach yet,
// among them a NULL.
func fillRaw(t *testing.T, s store) {
	t.Helper()
	now := time.Now()
	for _, tb := range []struct {
		name string
		rows [][]any
	}{
		{"groups", [][]any{{"g1", "Friends", "alice", now, "full"}}},
		{"group_members", [][]any{{"g1", "alice", "owner", now, nil, int64(0)}, {"g1", "carol", "member", now, int64(7), int64(3)}}},
	} {
		name, rows := tb.name, tb.rows
		i := slices.IndexFunc(storage.CopyTables(), func(tb storage.Table) bool { return tb.Name == name })
		if i < 0 {
			t.Fatalf("storage.CopyTables lacks %s", name)
		}
		if err := s.ImportRows(ctx(t), storage.CopyTables()[i], rows); err != nil {
			t.Fatalf("ImportRows(%s): %v", name, err)
		}
	}
}

// check compares the copy with its source through the Store API, then row
// for row, every column included.
func check(t *testing.T, src, dst store, fx fixture) {
	t.Helper()
	for _, id := range fx.users {
		want, err := src.GetUser(ctx(t), id)
		if err != nil {
			t.Fatalf("source GetUser(%s): %v", id, err)
		}
		got, err := dst.GetUser(ctx(t), id)
		if err != nil {
			t.Fatalf("GetUser(%s): %v", id, err)
		}
		if got.ID != want.ID || got.Name != want.Name || got.PasswordHash != want.PasswordHash || !got.CreatedAt.Equal(want.CreatedAt) {
			t.Errorf("user %s: got %+v, want %+v", id, got, want)
		}
	}
	for secret, user := range fx.tokens {
		got, err := dst.TokenUser(ctx(t), hash(secret), time.Now())
		switch {
		case user == "" && !errors.Is(err, storage.ErrNotFound):
			t.Errorf("TokenUser(%s) of an expired token = %q, %v; want ErrNotFound", secret, got, err)
		case user != "" && (err != nil || got != user):
			t.Errorf("TokenUser(%s) = %q, %v; want %q", secret, got, err, user)
		}
	}
	entries := 0
	for _, u := range fx.users {
		inbox := protocol.UserInbox(u)
		want, err := src.Read(ctx(t), inbox, 0, 10*messages)
		if err != nil {
			t.Fatalf("source Read(%s): %v", inbox, err)
		}
		got, err := dst.Read(ctx(t), inbox, 0, 10*messages)
		if err != nil {
			t.Fatalf("Read(%s): %v", inbox, err)
		}
		if !slices.EqualFunc(got, want, sameEntry) {
			t.Errorf("Read(%s): %d entries differ from the source's %d", inbox, len(got), len(want))
		}
		for i, e := range got {
			if e.Seq != int64(i+1) {
				t.Fatalf("Read(%s): entry %d has seq %d", inbox, i, e.Seq)
			}
		}
		entries += len(got)
		last, err := dst.LastSeq(ctx(t), inbox)
		if err != nil || last != int64(len(want)) {
			t.Errorf("LastSeq(%s) = %d, %v; want %d", inbox, last, err, len(want))
		}
	}
	if min := 2*messages + 3; entries < min {
		t.Errorf("%d entries copied, want at least %d", entries, min)
	}
	for _, c := range fx.cursors {
		got, err := dst.GetCursor(ctx(t), c.ClientID, c.Inbox)
		if err != nil || got != c.Seq {
			t.Errorf("GetCursor(%s, %s) = %d, %v; want %d", c.ClientID, c.Inbox, got, err, c.Seq)
		}
	}
	checkRows(t, src, dst)

	// Deliveries recorded before the move are known after it.
	if firsts, counts, err := dst.RecordDeliveries(ctx(t), fx.deliveries); err != nil || len(firsts) != 0 || counts[fx.deliveries[1].ID] != 1 {
		t.Errorf("RecordDeliveries of the copied deliveries = %v, %v, %v; want no firsts, a count of 1", firsts, counts, err)
	}

	// A retry of a message sent before the move is still a duplicate.
	want, dup, err := src.Append(ctx(t), fx.dup)
	if err != nil || !dup {
		t.Fatalf("source Append(dup) = dup %v, %v", dup, err)
	}
	got, dup, err := dst.Append(ctx(t), fx.dup)
	if err != nil || !dup || !slices.EqualFunc(got, want, sameEntry) {
		t.Errorf("Append(repeated cid) = %v, dup %v, %v; want the first copies %v", got, dup, err, want)
	}
	// New messages go on numbering where the source stopped.
	lastBob, _ := dst.LastSeq(ctx(t), "u/bob")
	lastCarol, _ := dst.LastSeq(ctx(t), "u/carol")
	es, dup, err := dst.Append(ctx(t), dm("carol", "bob", "after-the-move", []byte(`{"text":"new"}`)))
	if err != nil || dup {
		t.Fatalf("Append after copy: dup %v, %v", dup, err)
	}
	if es[0].Seq != lastBob+1 || es[1].Seq != lastCarol+1 {
		t.Errorf("Append after copy: seqs %d, %d; want %d, %d", es[0].Seq, es[1].Seq, lastBob+1, lastCarol+1)
	}
}

func sameEntry(a, b protocol.Entry) bool {
	return a.ID == b.ID && a.Inbox == b.Inbox && a.Seq == b.Seq && a.From == b.From && a.To == b.To &&
		a.TS == b.TS && a.Type == b.Type && a.Cid == b.Cid && string(a.Data) == string(b.Data)
}

// checkRows compares every table of src and dst row for row.
func checkRows(t *testing.T, src, dst store) {
	t.Helper()
	for _, tb := range storage.CopyTables() {
		want, got := dump(t, src, tb), dump(t, dst, tb)
		if !slices.Equal(got, want) {
			for i := range min(len(got), len(want)) {
				if got[i] != want[i] {
					t.Errorf("%s: first difference:\n got  %s\n want %s", tb.Name, got[i], want[i])
					break
				}
			}
			t.Errorf("%s: %d rows differ from the source's %d", tb.Name, len(got), len(want))
		}
	}
}

// dump returns the rows of a table as sorted strings, times as Unix
// microseconds.
func dump(t *testing.T, s store, tb storage.Table) []string {
	t.Helper()
	var rows []string
	err := s.ExportRows(ctx(t), tb, func(row []any) error {
		var b strings.Builder
		for i, v := range row {
			if tm, ok := v.(time.Time); ok {
				v = tm.UnixMicro()
			}
			if bs, ok := v.([]byte); ok {
				v = fmt.Sprintf("%x", bs)
			}
			fmt.Fprintf(&b, "%s=%v ", tb.Columns[i].Name, v)
		}
		rows = append(rows, b.String())
		return nil
	})
	if err != nil {
		t.Fatalf("ExportRows(%s): %v", tb.Name, err)
	}
	slices.Sort(rows)
	return rows
}

// TestCopy copies a filled store to an empty one, in every direction.
func TestCopy(t *testing.T) {
	for _, from := range backends {
		for _, to := range backends {
			t.Run(from.name+" to "+to.name, func(t *testing.T) {
				src, dst := from.open(t), to.open(t)
				fx := fill(t, src)
				var done []string
				err := storage.Copy(ctx(t), src, dst, func(p storage.Progress) {
					if p.Done {
						done = append(done, fmt.Sprintf("%s=%d", p.Table, p.Rows))
					}
				})
				if err != nil {
					t.Fatalf("Copy: %v", err)
				}
				t.Logf("copied %v", done)
				check(t, src, dst, fx)
			})
		}
	}
}

// TestCopyRefusesNonEmptyTarget: a target with one user is left alone.
func TestCopyRefusesNonEmptyTarget(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			src, dst := openSQLite(t), b.open(t)
			fill(t, src)
			if err := dst.CreateUser(ctx(t), storage.User{ID: "admin", Name: "Admin", PasswordHash: "h"}); err != nil {
				t.Fatal(err)
			}
			err := storage.Copy(ctx(t), src, dst, nil)
			if !errors.Is(err, storage.ErrTargetNotEmpty) || !strings.Contains(err.Error(), "table users has 1 rows") {
				t.Fatalf("Copy into a non-empty store: %v; want ErrTargetNotEmpty naming users", err)
			}
			if _, err := dst.GetUser(ctx(t), "alice"); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("after a refused copy, GetUser(alice) = %v; want ErrNotFound", err)
			}
		})
	}
}

// column is a column as a database's catalog describes it.
type column struct {
	typ     string
	notNull bool
}

// TestCopyTablesCoverSchema: every table and column of both schemas (apart
// from schema_migrations) is in storage.CopyTables with a kind that fits its
// type, and tables come after those they reference. When this fails after a
// migration, add the table or column to CopyTables.
func TestCopyTablesCoverSchema(t *testing.T) {
	pgTypes := map[storage.Kind]string{storage.KindText: "text", storage.KindInt: "bigint", storage.KindBytes: "bytea",
		storage.KindTime: "timestamp with time zone", storage.KindUUID: "uuid"}
	liteTypes := map[storage.Kind]string{storage.KindText: "TEXT", storage.KindInt: "INTEGER", storage.KindBytes: "BLOB",
		storage.KindTime: "INTEGER", storage.KindUUID: "TEXT"}

	t.Run("postgres", func(t *testing.T) {
		s := openPostgres(t).(*postgres.Store)
		schema := map[string]map[string]column{}
		rows, err := s.Pool().Query(ctx(t), `SELECT table_name, column_name, data_type, is_nullable = 'NO'
			FROM information_schema.columns WHERE table_schema = 'public' AND table_name <> 'schema_migrations'`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var table, name string
			var c column
			if err := rows.Scan(&table, &name, &c.typ, &c.notNull); err != nil {
				t.Fatal(err)
			}
			if schema[table] == nil {
				schema[table] = map[string]column{}
			}
			schema[table][name] = c
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		compareSchema(t, schema, pgTypes)

		var refs [][2]string
		rows, err = s.Pool().Query(ctx(t), `SELECT conrelid::regclass::text, confrelid::regclass::text
			FROM pg_constraint WHERE contype = 'f'`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var ref [2]string
			if err := rows.Scan(&ref[0], &ref[1]); err != nil {
				t.Fatal(err)
			}
			refs = append(refs, ref)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		checkOrder(t, refs)
	})

	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "parley.db")
		s, err := sqlite.Open(ctx(t), sqlite.Config{Path: path}, testLog(t))
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		query := func(q string, args ...any) *sql.Rows {
			t.Helper()
			rows, err := db.QueryContext(ctx(t), q, args...)
			if err != nil {
				t.Fatal(err)
			}
			return rows
		}
		var tables []string
		rows := query(`SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'schema_migrations'`)
		for rows.Next() {
			var name string
			if err := rows.Scan(&name); err != nil {
				t.Fatal(err)
			}
			tables = append(tables, name)
		}
		rows.Close()
		schema := map[string]map[string]column{}
		var refs [][2]string
		for _, table := range tables {
			schema[table] = map[string]column{}
			rows := query(`SELECT name, type, "notnull" FROM pragma_table_info(?)`, table)
			for rows.Next() {
				var name string
				var c column
				if err := rows.Scan(&name, &c.typ, &c.notNull); err != nil {
					t.Fatal(err)
				}
				schema[table][name] = c
			}
			rows.Close()
			rows = query(`SELECT "table" FROM pragma_foreign_key_list(?)`, table)
			for rows.Next() {
				var parent string
				if err := rows.Scan(&parent); err != nil {
					t.Fatal(err)
				}
				refs = append(refs, [2]string{table, parent})
			}
			rows.Close()
		}
		compareSchema(t, schema, liteTypes)
		checkOrder(t, refs)
	})
}

func compareSchema(t *testing.T, schema map[string]map[string]column, types map[storage.Kind]string) {
	t.Helper()
	listed := map[string]bool{}
	for _, tb := range storage.CopyTables() {
		listed[tb.Name] = true
		cols, ok := schema[tb.Name]
		if !ok {
			t.Errorf("storage.CopyTables lists table %s, which the schema lacks", tb.Name)
			continue
		}
		seen := map[string]bool{}
		for _, c := range tb.Columns {
			seen[c.Name] = true
			got, ok := cols[c.Name]
			switch {
			case !ok:
				t.Errorf("storage.CopyTables lists %s.%s, which the schema lacks", tb.Name, c.Name)
			case got.typ != types[c.Kind]:
				t.Errorf("%s.%s is %s in the schema; kind %s wants %s", tb.Name, c.Name, got.typ, c.Kind, types[c.Kind])
			case got.notNull == c.Null:
				t.Errorf("%s.%s: NOT NULL is %v in the schema, but Column.Null is %v", tb.Name, c.Name, got.notNull, c.Null)
			}
		}
		for name := range cols {
			if !seen[name] {
				t.Errorf("column %s.%s is not copied: add it to storage.CopyTables", tb.Name, name)
			}
		}
	}
	for table := range schema {
		if !listed[table] {
			t.Errorf("table %s is not copied: add it to storage.CopyTables (storage/copy.go)", table)
		}
	}
}

// checkOrder checks that each table comes after the tables it references.
func checkOrder(t *testing.T, refs [][2]string) {
	t.Helper()
	pos := map[string]int{}
	for i, tb := range storage.CopyTables() {
		pos[tb.Name] = i
	}
	for _, r := range refs {
		if r[0] != r[1] && pos[r[0]] < pos[r[1]] {
			t.Errorf("storage.CopyTables: %s references %s, so it must come after it", r[0], r[1])
		}
	}
}
