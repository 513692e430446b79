package postgres_test

import (
	"context"
	"testing"

	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/storage/postgres"
	"github.com/parleychat/parley/storage/postgres/pgtest"
	"github.com/parleychat/parley/storage/storetest"
)

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storage.Store {
		s, err := postgres.Open(context.Background(), postgres.Config{URL: pgtest.NewDatabase(t), PushJobs: true}, nil)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}
