package broker_test

import (
	"os"
	"testing"

	"github.com/parleychat/parley/broker/brokertest"

	"github.com/parleychat/parley/broker"
	"github.com/parleychat/parley/hooks"
	"github.com/parleychat/parley/storage/postgres/pgtest"
)

// brokertestConfig is a configuration with small limits that tests hit.
func brokertestConfig() broker.Config {
	return broker.Config{MaxPayload: 4096, Inbox: hooks.InboxConfig{Rate: -1}}
}

func brokertestDB(t *testing.T) string { return pgtest.NewDatabase(t) }

// forEachStore runs an end-to-end test against every store kind, so that
// the stores cannot drift apart.
func forEachStore(t *testing.T, test func(t *testing.T, o brokertest.Options)) {
	for _, kind := range brokertest.Stores {
		t.Run(kind, func(t *testing.T) { test(t, brokertest.Options{Store: kind}) })
	}
}

func withConfig(o brokertest.Options, cfg broker.Config) brokertest.Options {
	o.Config = cfg
	return o
}

// benchStore is the store benchmarks run on: PARLEY_BENCH_STORE=sqlite for
// the embedded one, Postgres otherwise.
func benchStore() string {
	if os.Getenv("PARLEY_BENCH_STORE") == brokertest.SQLite {
		return brokertest.SQLite
	}
	return brokertest.Postgres
}
