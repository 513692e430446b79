package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley/storage/postgres"
	"github.com/parleychat/parley/storage/postgres/pgtest"
)

// TestCreateDatabaseConcurrently: the nodes of a cluster starting at once
// all create the database they share; every one of them succeeds (Postgres
// answers the losers of the race 42P04 or 23505).
func TestCreateDatabaseConcurrently(t *testing.T) {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "parley_test_create_" + hex.EncodeToString(b)
	url := pgtest.WithDatabase(pgtest.ServerURL(), name)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, pgtest.ServerURL())
		if err != nil {
			t.Errorf("drop %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for range 6 {
		wg.Go(func() { errs <- postgres.CreateDatabase(ctx, url) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a concurrent CreateDatabase failed: %v", err)
		}
	}
}
