package broker_test

import (
	"testing"

	"github.com/parleychat/parley/broker"
	"github.com/parleychat/parley/hooks"
	"github.com/parleychat/parley/storage/postgres/pgtest"
)

// brokertestConfig is a configuration with small limits that tests hit.
func brokertestConfig() broker.Config {
	return broker.Config{MaxPayload: 4096, Inbox: hooks.InboxConfig{Rate: -1}}
}

func brokertestDB(t *testing.T) string { return pgtest.NewDatabase(t) }
