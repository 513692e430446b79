package push

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage"
)

// Store is what the Service needs from storage: the job queue and the
// acknowledgements that cancel its pushes, recipients' push profiles, and
// the names, members and unread counts a notification shows. storage.Store
// implements it.
type Store interface {
	ClaimPushJobs(ctx context.Context, dueTS int64, now, leaseUntil time.Time, limit int) ([]storage.PushJob, error)
	DeletePushJobs(ctx context.Context, ids []string) error
	RecordPushAcks(ctx context.Context, acks []storage.PushAck) error
	CountPushJobs(ctx context.Context) (n int64, oldestTS int64, err error)
	PushProfile(ctx context.Context, user string) (storage.PushProfile, error)
	RemovePushToken(ctx context.Context, token string, before time.Time) (bool, error)
	GetUser(ctx context.Context, id string) (storage.User, error)
	GetGroup(ctx context.Context, id string) (storage.Group, error)
	Conversations(ctx context.Context, user string) ([]storage.Conversation, error)
}

// ServiceConfig configures the Service. The zero value of each field means
// its default.
type ServiceConfig struct {
	// Grace is how long a message waits before its pushes are sent, so
	// that a recipient who reconnects (or whose device acknowledges it
	// late) gets none. An acknowledgement cancels the push on every node
	// once it is in the store, AckFlush plus one write after the device's
	// PUBACK: Grace must exceed delivery, the device's round trip, AckFlush
	// and a write (see acks.go). Default 3s.
	Grace time.Duration
	// Poll is how often the queue is polled for due jobs. Default 200ms.
	Poll time.Duration
	// Workers bounds the sends in flight. Default 8.
	Workers int
	// Batch is about how many due jobs one claim takes. Default 100.
	Batch int
	// Lease is how long a claimed job is held before another node may
	// claim it again (after a crash). Default 2m.
	Lease time.Duration
	// MaxAttempts bounds the sends of one notification to one device that
	// fail as Retryable. Default 5.
	MaxAttempts int
	// AckFlush is how often the acknowledgements Delivered queues are
	// written to the store, a batch per statement; a full batch is written
	// at once. Keep it well below Grace. Default 50ms.
	AckFlush time.Duration
	// AckBatch is the most acknowledgements one write carries.
	// Default 1,000.
	AckBatch int
	// AckQueue bounds the acknowledgements waiting to be written (while
	// the store is slow or down); beyond it they are dropped, which can
	// cost a needless push. Default 100,000.
	AckQueue int
	// Registry receives the push metrics. Optional.
	Registry prometheus.Registerer
}

func (c *ServiceConfig) setDefaults() {
	if c.Grace <= 0 {
		c.Grace = 3 * time.Second
	}
	if c.Poll <= 0 {
		c.Poll = 200 * time.Millisecond
	}
	if c.Workers <= 0 {
		c.Workers = 8
	}
	if c.Batch <= 0 {
		c.Batch = 100
	}
	if c.Lease <= 0 {
		c.Lease = 2 * time.Minute
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 5
	}
	if c.AckFlush <= 0 {
		c.AckFlush = 50 * time.Millisecond
	}
	if c.AckBatch <= 0 {
		c.AckBatch = 1000
	}
	if c.AckQueue <= 0 {
		c.AckQueue = 100_000
	}
}

// DataCount is the key of Notification.Data that holds how many messages a
// coalesced notification stands for, when more than one.
const DataCount = "count"

// Service is the push outbox's dispatcher: it claims due push jobs from the
// store, works out who should be notified, coalesces the messages waiting
// for one user in one conversation into one notification, sends it to every
// token of the user through a Sender, retries and prunes tokens by Result,
// and deletes the jobs. Start it once; Close is safe to call twice.
type Service struct {
	cfg    ServiceConfig
	store  Store
	sender Sender
	log    *slog.Logger
	m      serviceMetrics

	acks     *ackQueue      // acknowledgements not yet in the store
	sem      chan struct{}  // one slot per send in flight: Workers
	inflight sync.WaitGroup // batches whose sends are still running
	wg       sync.WaitGroup // the dispatcher and the acknowledgement writer

	mu      sync.Mutex // guards the fields below
	cancel  context.CancelFunc
	started bool
	once    sync.Once
}

// NewService returns a Service; Start runs it. log may be nil.
func NewService(cfg ServiceConfig, store Store, sender Sender, log *slog.Logger) *Service {
	cfg.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, store: store, sender: sender, log: log.With("component", "push"),
		acks: newAckQueue(cfg.AckQueue, cfg.AckBatch), sem: make(chan struct{}, cfg.Workers)}
	s.m = newServiceMetrics(cfg.Registry, store)
	if 2*cfg.AckFlush > cfg.Grace {
		s.log.Warn("push: the grace period is short for the acknowledgement flush: a device's acknowledgement "+
			"seen by another node may come after the push", "grace", cfg.Grace, "ack_flush", cfg.AckFlush)
	}
	return s
}

// Grace returns the configured grace period.
func (s *Service) Grace() time.Duration { return s.cfg.Grace }

// Start starts the dispatcher and the writer of acknowledgements; they stop
// when ctx ends or on Close.
func (s *Service) Start(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return
	}
	s.started = true
	ctx, s.cancel = context.WithCancel(ctx)
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.run(ctx) }()
	go func() { defer s.wg.Done(); s.runAcks(ctx) }()
}

// Close stops the dispatcher and waits for the sends in flight, and writes
// the acknowledgements still queued; jobs not yet finished stay in the
// queue for the next start (after their lease). Safe to call twice.
func (s *Service) Close() {
	s.once.Do(func() {
		s.mu.Lock()
		if s.cancel != nil {
			s.cancel()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
}

func (s *Service) run(ctx context.Context) {
	defer s.inflight.Wait()
	t := time.NewTicker(s.cfg.Poll)
	defer t.Stop()
	for {
		// Drain: claim again at once while claims come back full.
		for ctx.Err() == nil {
			n, err := s.cycle(ctx)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("push cycle", "err", err)
				}
				break
			}
			if n < s.cfg.Batch {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// task is one notification to one user: the newest of the jobs waiting for
// the user in one conversation, and how many there are.
type task struct {
	user   string
	conv   string
	latest storage.PushJob
	group  *storage.Group
	count  int
}

// cycle claims one batch of due jobs, sends their notifications and deletes
// them. It returns how many jobs it claimed.
func (s *Service) cycle(ctx context.Context) (int, error) {
	now := time.Now()
	jobs, err := s.store.ClaimPushJobs(ctx, now.Add(-s.cfg.Grace).UnixMilli(), now, now.Add(s.cfg.Lease), s.cfg.Batch)
	if err != nil || len(jobs) == 0 {
		return 0, err
	}
	tasks := s.plan(ctx, jobs)
	if ctx.Err() != nil {
		return len(jobs), ctx.Err()
	}
	s.m.queued.Add(float64(len(tasks)))
	// The sends share Workers slots across batches: a batch waiting on a
	// retry does not hold up the next one, and a full pool holds up the
	// claiming (the backpressure).
	var wg sync.WaitGroup
	for _, tk := range tasks {
		select {
		case s.sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-s.sem; wg.Done() }()
			s.notify(ctx, tk)
		}()
	}
	s.inflight.Add(1)
	go func() {
		defer s.inflight.Done()
		wg.Wait()
		if ctx.Err() != nil {
			// Stopped mid-way: leave the jobs to be claimed again after
			// their lease rather than lose the pushes not yet sent.
			return
		}
		ids := make([]string, len(jobs))
		for i, j := range jobs {
			ids[i] = j.ID
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := s.store.DeletePushJobs(dctx, ids); err != nil {
			// They are sent: after their lease they will be sent again.
			s.log.Error("push: delete finished jobs", "jobs", len(ids), "err", err)
		}
	}()
	return len(jobs), ctx.Err()
}

// plan resolves the recipients of jobs (oldest first), leaves out the sender
// and those who acknowledged the message, and coalesces the rest per (user,
// conversation). An acknowledgement is known from the claim (the store's,
// recorded by any node) or from this node's queue (not yet written).
func (s *Service) plan(ctx context.Context, jobs []storage.PushJob) []*task {
	groups := map[string]*storage.Group{}
	byKey := map[[2]string]*task{}
	var tasks []*task
	for _, j := range jobs {
		var users []string
		var conv string
		var g *storage.Group
		switch {
		case strings.HasPrefix(j.Inbox, protocol.GroupPrefix):
			id := strings.TrimPrefix(j.Inbox, protocol.GroupPrefix)
			g = groups[id]
			if g == nil {
				gg, err := s.store.GetGroup(ctx, id)
				if err != nil {
					if !errors.Is(err, storage.ErrNotFound) {
						s.log.Warn("push: group", "group", id, "err", err)
					}
					continue
				}
				g = &gg
				groups[id] = g
			}
			for _, m := range g.Members {
				if m.User != j.From {
					users = append(users, m.User)
				}
			}
			conv = j.Inbox
		default:
			users = []string{j.To}
			conv = protocol.UserInbox(j.From)
		}
		acked := s.acks.holds(j.ID, users) // this node's, not yet written
		for _, u := range j.Acked {        // the store's, from every node
			if acked == nil {
				acked = make(map[string]bool, len(j.Acked))
			}
			acked[u] = true
		}
		for _, u := range users {
			if u == j.From {
				continue
			}
			if acked[u] {
				s.m.skipped.WithLabelValues("delivered").Inc()
				continue
			}
			k := [2]string{u, conv}
			tk := byKey[k]
			if tk == nil {
				tk = &task{user: u, conv: conv, group: g}
				byKey[k] = tk
				tasks = append(tasks, tk)
			}
			tk.latest = j
			tk.count++
		}
	}
	return tasks
}

// notify sends one task's notification to every token of its user.
func (s *Service) notify(ctx context.Context, tk *task) {
	p, err := s.store.PushProfile(ctx, tk.user)
	if err != nil {
		s.log.Warn("push: profile", "user", tk.user, "err", err)
		s.m.failed.WithLabelValues("store").Inc()
		return
	}
	if len(p.Devices) == 0 {
		return
	}
	if p.Muted(tk.conv, time.Now()) {
		s.m.skipped.WithLabelValues("muted").Inc()
		return
	}
	j := tk.latest
	msg := Message{Preview: p.Preview, Inbox: j.Inbox, Seq: j.Seq, ID: j.ID,
		Conversation: tk.conv, Time: time.UnixMilli(j.TS)}
	if p.Preview {
		// Text and names only for a preview: a content-free notification
		// (previews off) has no field to carry them, and they are not read.
		msg.Text, msg.SenderName = bodyText(j.Data), j.From
		if u, err := s.store.GetUser(ctx, j.From); err == nil && u.Name != "" {
			msg.SenderName = u.Name
		}
		if tk.group != nil {
			msg.GroupName = tk.group.Name
			if msg.GroupName == "" {
				msg.GroupName = tk.group.ID
			}
		}
	}
	if cs, err := s.store.Conversations(ctx, tk.user); err == nil {
		for _, c := range cs {
			msg.Badge += c.Unread
		}
	}
	n := NewNotification(msg)
	if tk.count > 1 {
		n.Data[DataCount] = strconv.Itoa(tk.count)
	}
	for _, d := range p.Devices {
		s.send(ctx, d, n)
	}
}

// send sends n to one device, retrying Retryable failures with Backoff.
func (s *Service) send(ctx context.Context, d storage.PushDevice, n Notification) {
	dev := Device{Platform: Platform(d.Platform), Token: d.Token, Environment: Environment(d.Environment)}
	for attempt := 1; ; attempt++ {
		r := s.sender.Send(ctx, dev, n)
		switch r.Outcome {
		case Sent:
			s.m.sent.Inc()
			return
		case InvalidToken:
			s.m.failed.WithLabelValues(reasonLabel(r)).Inc()
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			removed, err := s.store.RemovePushToken(rctx, d.Token, r.InvalidSince)
			cancel()
			if err != nil {
				s.log.Warn("push: remove token", "user", d.User, "token", shortToken(d.Token), "err", err)
			} else if removed {
				s.m.removed.Inc()
				s.log.Info("push token removed", "user", d.User, "token", shortToken(d.Token), "result", r)
			}
			return
		case Retryable:
			if attempt >= s.cfg.MaxAttempts || ctx.Err() != nil {
				s.m.failed.WithLabelValues(reasonLabel(r)).Inc()
				s.log.Warn("push failed, giving up", "user", d.User, "token", shortToken(d.Token), "attempts", attempt, "result", r)
				return
			}
			wait := Backoff(attempt, r.RetryAfter)
			if wait > s.cfg.Lease/2 {
				// Waiting longer would outlive the job's lease, and another
				// claim would send the notification again.
				s.m.failed.WithLabelValues(reasonLabel(r)).Inc()
				s.log.Warn("push failed: the provider asks to wait too long", "user", d.User,
					"token", shortToken(d.Token), "wait", wait, "result", r)
				return
			}
			s.m.retried.Inc()
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		default:
			s.m.failed.WithLabelValues(reasonLabel(r)).Inc()
			s.log.Warn("push failed", "user", d.User, "token", shortToken(d.Token), "result", r)
			return
		}
	}
}

// reasonLabel is the failed-pushes label of a Result: its reason, else its
// outcome.
func reasonLabel(r Result) string {
	if r.Reason != "" {
		return r.Reason
	}
	return r.Outcome.String()
}

// bodyText returns the text of a message body {"text": …}, "" if none.
func bodyText(data []byte) string {
	var b struct {
		Text string `json:"text"`
	}
	if json.Unmarshal(data, &b) != nil {
		return ""
	}
	return b.Text
}

type serviceMetrics struct {
	queued, sent, retried, removed, acksRecorded prometheus.Counter
	failed, skipped, acksDropped                 *prometheus.CounterVec
}

func newServiceMetrics(reg prometheus.Registerer, store Store) serviceMetrics {
	m := serviceMetrics{
		queued:  prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_push_queued_total", Help: "Notifications queued for sending (after coalescing)."}),
		sent:    prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_push_sent_total", Help: "Notifications accepted by a provider."}),
		retried: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_push_retries_total", Help: "Sends retried after a retryable failure."}),
		removed: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_push_tokens_removed_total", Help: "Device tokens deleted as invalid."}),
		failed:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parley_push_failed_total", Help: "Sends that failed for good, by reason."}, []string{"reason"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parley_push_skipped_total",
			Help: "Notifications not sent, by reason (delivered counts recipients of a message)."}, []string{"reason"}),
		acksRecorded: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_push_acks_recorded_total",
			Help: "Acknowledgements of messages written to the store to cancel their pushes on every node."}),
		acksDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parley_push_acks_dropped_total",
			Help: "Acknowledgements never written to the store, by reason (queue_full, stale, invalid)."}, []string{"reason"}),
	}
	if reg == nil {
		return m
	}
	gauge := func(name, help string, f func(n, oldest int64) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			n, oldest, err := store.CountPushJobs(ctx)
			if err != nil {
				return -1
			}
			return f(n, oldest)
		})
	}
	reg.MustRegister(m.queued, m.sent, m.retried, m.removed, m.failed, m.skipped, m.acksRecorded, m.acksDropped,
		gauge("parley_push_queue_jobs", "Push jobs waiting in the queue.", func(n, _ int64) float64 { return float64(n) }),
		gauge("parley_push_queue_age_seconds", "Age of the oldest push job waiting, 0 if none.", func(_, oldest int64) float64 {
			if oldest == 0 {
				return 0
			}
			return time.Since(time.UnixMilli(oldest)).Seconds()
		}),
	)
	return m
}
