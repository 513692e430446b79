package hooks

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the Inbox hook's Prometheus collectors.
type Metrics struct {
	Stored         *prometheus.CounterVec // entries stored, by type
	Refused        *prometheus.CounterVec // refused publishes, by reason code
	Live           *prometheus.CounterVec // live-only entries forwarded (typing), by type
	Acked          prometheus.Counter     // deliveries acknowledged by subscribers
	StoreLatency   prometheus.Histogram   // publish received → stored
	Catchups       prometheus.Counter     // catch-ups started
	CatchupEntries prometheus.Counter     // entries sent by catch-up
	Receipts       prometheus.Counter     // delivered receipts stored
	ReceiptsLost   prometheus.Counter     // receipt events dropped because the queue was full
	SlowConsumers  prometheus.Counter     // subscribers disconnected because their queue overflowed
	Deferred       prometheus.Counter     // live deliveries switched to catch-up by a full Receive Maximum
	CursorErrors   prometheus.Counter     // failed cursor flushes

	RateWaits        prometheus.Counter // publishes held back on their client's goroutine by a rate limit
	RateDisconnects  prometheus.Counter // connections closed for publishing beyond their rate limits
	ErrorsSuppressed prometheus.Counter // error entries not stored: the user's budget was spent
	SessionsEvicted  prometheus.Counter // persistent sessions evicted by MaxSessionsPerUser

	Resyncs         prometheus.Counter // subscriptions made to catch up after a bus outage
	RemoteTakeovers prometheus.Counter // sessions ended because their client id connected to another node
	Redelivered     prometheus.Counter // retried messages delivered because this node had not delivered them
	GapRepairs      prometheus.Counter // entries read from the store because they never reached this node
	Reordered       prometheus.Counter // entries held for one below them still on its way (order.go)
	ReorderTimeouts prometheus.Counter // times held entries went out without the ones below them
	ReceiptFallback prometheus.Counter // acknowledgements receipted from memory because the store could not record them

	UserShares *prometheus.CounterVec // refreshes of users' shares of the per-user rate between nodes, by result
}

// NewMetrics creates the collectors and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Stored: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parley_entries_stored_total",
			Help: "Entries stored in inboxes, by type (a DM counts once, not per copy)."}, []string{"type"}),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parley_publish_refused_total",
			Help: "Publishes refused, by MQTT reason code."}, []string{"code"}),
		Live: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parley_live_forwarded_total",
			Help: "Live-only entries (never stored) forwarded, by type."}, []string{"type"}),
		Acked: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_deliveries_acked_total",
			Help: "Inbox deliveries acknowledged by a subscriber's PUBACK."}),
		StoreLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "parley_publish_store_seconds",
			Help:    "Time from a publish arriving to its entries being committed.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		Catchups: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_catchups_total",
			Help: "Catch-ups of persistent sessions started."}),
		CatchupEntries: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_catchup_entries_total",
			Help: "Entries sent to devices by catch-up."}),
		Receipts: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_receipts_total",
			Help: "Delivered receipts stored."}),
		ReceiptsLost: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_receipt_events_dropped_total",
			Help: "Acknowledgements that produced no receipt because the receipt queue was full."}),
		SlowConsumers: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_slow_consumers_disconnected_total",
			Help: "Subscribers disconnected because their outbound queue or inflight window overflowed."}),
		Deferred: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_deliveries_deferred_total",
			Help: "Live deliveries held back because the subscriber's Receive Maximum was reached; catch-up sends them as it acknowledges."}),
		CursorErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_cursor_flush_errors_total",
			Help: "Failed writes of delivery cursors (retried)."}),
		RateWaits: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_publish_rate_waits_total",
			Help: "Publishes (MQTT 3.1.1, QoS 0) held back on their client's connection until their rate limit allowed them."}),
		RateDisconnects: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_rate_disconnects_total",
			Help: "Connections closed for publishing beyond their rate limits."}),
		ErrorsSuppressed: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_error_entries_suppressed_total",
			Help: "Error entries not stored because the user's budget (limits.error_entries) was spent."}),
		SessionsEvicted: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_sessions_evicted_total",
			Help: "Persistent sessions evicted because their user held limits.max_sessions_per_user."}),
		Resyncs: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_bus_resyncs_total",
			Help: "Inbox subscriptions sent to catch-up from the store because the cluster bus came back after an outage."}),
		ReceiptFallback: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_receipt_record_failures_total",
			Help: "Acknowledgements receipted from this node's memory because the store could not record them (a receipt may repeat across nodes)."}),
		Reordered: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_delivery_reordered_total",
			Help: "Entries held back for an entry below them still on its way, so that an inbox is delivered in seq order."}),
		ReorderTimeouts: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_delivery_reorder_timeouts_total",
			Help: "Times held entries were delivered without the entries below them, after waiting 50 ms."}),
		GapRepairs: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_gap_repairs_total",
			Help: "Entries that never reached this node live (their node died after the commit, or the bus dropped them), read from the store and fanned out."}),
		Redelivered: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_retries_redelivered_total",
			Help: "Retries of stored messages (same cid) delivered because this node had not delivered them (the storing node died before it could)."}),
		UserShares: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parley_user_share_refreshes_total",
			Help: "Refreshes of a user's share of limits.user_rate between the nodes holding its connections, by result: ok, error (NATS away: the last share stays), dropped (queue full)."},
			[]string{"result"}),
		RemoteTakeovers: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_sessions_taken_over_remotely_total",
			Help: "Sessions ended here because a connection with their client id began on another node."}),
	}
	if reg != nil {
		reg.MustRegister(m.Stored, m.Refused, m.Live, m.Acked, m.StoreLatency, m.Catchups, m.CatchupEntries,
			m.Receipts, m.ReceiptsLost, m.SlowConsumers, m.CursorErrors,
			m.RateWaits, m.RateDisconnects, m.ErrorsSuppressed, m.SessionsEvicted, m.Deferred, m.Resyncs, m.RemoteTakeovers, m.Redelivered, m.GapRepairs, m.Reordered, m.ReorderTimeouts, m.ReceiptFallback,
			m.UserShares)
	}
	return m
}
