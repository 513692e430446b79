package broker

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley/storage"
)

// MaintenanceConfig says how often the node prunes the store and what.
// Every node of a cluster may run it: pruning is idempotent.
type MaintenanceConfig struct {
	// Interval between prunes; the first runs one Interval after start.
	// Default 1h. Negative turns pruning off.
	Interval time.Duration
	// DedupAge is how long an idempotency key (sender, inbox, cid) is
	// kept: a retry older than that is stored as a new message. Default
	// 720h.
	DedupAge time.Duration
	// CursorAge deletes the delivery cursors of a device that acknowledged
	// nothing for that long; such a device, if it ever returns, starts at
	// its inboxes' ends (history stays readable over HTTP). Default 2160h;
	// keep it above mqtt.max_session_expiry.
	CursorAge time.Duration
	// PushAckAge deletes the acknowledgements recorded for push
	// suppression that outlived their push jobs (a race leaves a few).
	// Default 24h; keep it well above push.grace.
	PushAckAge time.Duration
	// DeliveryAge deletes the records of which users have which message
	// (delivered receipts, once per message across nodes). Default 72h: an
	// acknowledgement of an older message may repeat its receipt.
	DeliveryAge time.Duration
	// Timeout bounds one prune. Default 5m.
	Timeout time.Duration
}

func (c *MaintenanceConfig) setDefaults() {
	if c.Interval == 0 {
		c.Interval = time.Hour
	}
	if c.DedupAge <= 0 {
		c.DedupAge = 30 * 24 * time.Hour
	}
	if c.CursorAge <= 0 {
		c.CursorAge = 90 * 24 * time.Hour
	}
	if c.PushAckAge <= 0 {
		c.PushAckAge = 24 * time.Hour
	}
	if c.DeliveryAge <= 0 {
		c.DeliveryAge = 72 * time.Hour
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Minute
	}
}

// maintainer prunes expired tokens, old idempotency keys and the cursors
// of devices gone for good, so that the tables a node writes on every
// message do not grow for ever.
type maintainer struct {
	cfg    MaintenanceConfig
	store  storage.Maintenance
	log    *slog.Logger
	pruned *prometheus.CounterVec
	errs   prometheus.Counter

	quit chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

func newMaintainer(cfg MaintenanceConfig, st storage.Maintenance, reg prometheus.Registerer, log *slog.Logger) *maintainer {
	m := &maintainer{cfg: cfg, store: st, log: log, quit: make(chan struct{}),
		pruned: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parley_pruned_rows_total",
			Help: "Rows the periodic prune deleted, by kind (tokens, dedup, cursors)."}, []string{"kind"}),
		errs: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_prune_errors_total",
			Help: "Periodic prunes that failed."}),
	}
	reg.MustRegister(m.pruned, m.errs)
	return m
}

// Start runs the prunes until Close.
func (m *maintainer) Start() {
	if m.cfg.Interval < 0 {
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(m.cfg.Interval)
		defer t.Stop()
		for {
			select {
			case <-m.quit:
				return
			case <-t.C:
				m.prune()
			}
		}
	}()
}

func (m *maintainer) prune() {
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.Timeout)
	defer cancel()
	go func() { // Close cuts a prune short
		select {
		case <-m.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	p, err := m.store.Prune(ctx, storage.Retention{Tokens: true, Dedup: m.cfg.DedupAge, Cursors: m.cfg.CursorAge,
		PushAcks: m.cfg.PushAckAge, Deliveries: m.cfg.DeliveryAge})
	m.pruned.WithLabelValues("tokens").Add(float64(p.Tokens))
	m.pruned.WithLabelValues("dedup").Add(float64(p.DedupKeys))
	m.pruned.WithLabelValues("cursors").Add(float64(p.Cursors))
	m.pruned.WithLabelValues("push_acks").Add(float64(p.PushAcks))
	m.pruned.WithLabelValues("deliveries").Add(float64(p.Deliveries))
	if err != nil {
		m.errs.Inc()
		m.log.Warn("prune", "error", err, "tokens", p.Tokens, "dedup_keys", p.DedupKeys, "cursors", p.Cursors,
			"push_acks", p.PushAcks, "deliveries", p.Deliveries)
		return
	}
	if p.Tokens+p.DedupKeys+p.Cursors+p.PushAcks+p.Deliveries > 0 {
		m.log.Info("pruned", "tokens", p.Tokens, "dedup_keys", p.DedupKeys, "cursors", p.Cursors, "push_acks", p.PushAcks,
			"deliveries", p.Deliveries)
	}
}

// Close stops the prunes, cutting a running one short. Safe to call twice.
func (m *maintainer) Close() {
	m.once.Do(func() {
		close(m.quit)
		m.wg.Wait()
	})
}
