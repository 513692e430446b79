package push_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/internal/testwait"
	"github.com/parleychat/parley/push"
	"github.com/parleychat/parley/storage"
)

// memStore is an in-memory push.Store: a queue of jobs with their
// acknowledgements, profiles, users and groups, enough to test the
// Service's decisions without a database.
type memStore struct {
	mu       sync.Mutex // guards the fields below
	jobs     []storage.PushJob
	leased   map[string]bool
	acks     map[string][]string // job id → users
	profiles map[string]storage.PushProfile
	groups   map[string]storage.Group
	removed  []string
	ackErr   error // RecordPushAcks fails with it while set
	writes   []int // the sizes of RecordPushAcks calls, failed ones too
}

func (m *memStore) ClaimPushJobs(_ context.Context, dueTS int64, _, _ time.Time, _ int) ([]storage.PushJob, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	inboxes := map[string]bool{}
	for _, j := range m.jobs {
		if j.TS <= dueTS && !m.leased[j.ID] {
			inboxes[j.Inbox] = true
		}
	}
	var out []storage.PushJob
	for _, j := range m.jobs {
		if inboxes[j.Inbox] && !m.leased[j.ID] {
			m.leased[j.ID] = true
			j.Acked = slices.Clone(m.acks[j.ID])
			out = append(out, j)
		}
	}
	return out, nil
}

func (m *memStore) DeletePushJobs(_ context.Context, ids []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.jobs = slices.DeleteFunc(m.jobs, func(j storage.PushJob) bool { return slices.Contains(ids, j.ID) })
	for _, id := range ids {
		delete(m.acks, id)
	}
	return nil
}

// RecordPushAcks keeps the acknowledgements of queued jobs, as the stores
// do.
func (m *memStore) RecordPushAcks(_ context.Context, acks []storage.PushAck) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.writes = append(m.writes, len(acks))
	if m.ackErr != nil {
		return m.ackErr
	}
	if m.acks == nil {
		m.acks = map[string][]string{}
	}
	for _, a := range acks {
		queued := slices.ContainsFunc(m.jobs, func(j storage.PushJob) bool { return j.ID == a.ID })
		if queued && !slices.Contains(m.acks[a.ID], a.User) {
			m.acks[a.ID] = append(m.acks[a.ID], a.User)
		}
	}
	return nil
}

// recorded returns how many acknowledgements the store holds.
func (m *memStore) recorded() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, us := range m.acks {
		n += len(us)
	}
	return n
}

func (m *memStore) CountPushJobs(context.Context) (int64, int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return int64(len(m.jobs)), 0, nil
}

func (m *memStore) PushProfile(_ context.Context, user string) (storage.PushProfile, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.profiles[user], nil
}

func (m *memStore) RemovePushToken(_ context.Context, token string, _ time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.removed = append(m.removed, token)
	return true, nil
}

func (m *memStore) GetUser(_ context.Context, id string) (storage.User, error) {
	return storage.User{ID: id, Name: "Name of " + id}, nil
}

func (m *memStore) GetGroup(_ context.Context, id string) (storage.Group, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	g, ok := m.groups[id]
	if !ok {
		return g, storage.ErrNotFound
	}
	return g, nil
}

func (m *memStore) Conversations(context.Context, string) ([]storage.Conversation, error) {
	return []storage.Conversation{{Unread: 2}, {Unread: 5}}, nil
}

func (m *memStore) left() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.jobs)
}

// recorder is a Sender that records what it is asked to send and answers
// from a script per token (Sent when the script is empty).
type recorder struct {
	mu      sync.Mutex // guards the fields below
	sent    []sent
	scripts map[string][]push.Result
}

type sent struct {
	token string
	n     push.Notification
}

func (r *recorder) Send(_ context.Context, d push.Device, n push.Notification) push.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, sent{d.Token, n})
	if s := r.scripts[d.Token]; len(s) > 0 {
		r.scripts[d.Token] = s[1:]
		return s[0]
	}
	return push.Result{Outcome: push.Sent, ID: "x"}
}

func (r *recorder) all() []sent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.sent)
}

// msgID returns the id of test message n: a UUID, as message ids are.
func msgID(n int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", n) }

func device(user, token string) storage.PushDevice {
	return storage.PushDevice{Token: token, User: user, Platform: "fcm"}
}

// TestServiceDecisions runs one queue through a Service: who is pushed,
// coalescing, mutes, previews, acknowledged messages, retries and invalid
// tokens.
func TestServiceDecisions(t *testing.T) {
	past := time.Now().Add(-time.Minute).UnixMilli()
	job := func(id, inbox, from, to, text string, seq int64) storage.PushJob {
		return storage.PushJob{ID: id, Inbox: inbox, Seq: seq, From: from, To: to, TS: past + seq,
			Data: []byte(`{"text":"` + text + `"}`)}
	}
	st := &memStore{
		leased: map[string]bool{},
		jobs: []storage.PushJob{
			job(msgID(1), "u/bob", "alice", "bob", "one", 1),
			job(msgID(2), "u/bob", "alice", "bob", "two", 2),       // coalesced with m1
			job(msgID(3), "u/carol", "alice", "carol", "muted", 1), // carol muted alice
			job(msgID(4), "u/dave", "alice", "dave", "secret", 1),  // dave: previews off
			job(msgID(5), "u/erin", "alice", "erin", "acked", 1),   // erin's device acknowledged it
			job(msgID(6), "g/team", "alice", "team", "standup", 1), // bob and frank; alice is the sender
			job(msgID(7), "u/gina", "alice", "gina", "retry", 1),   // 429, then sent
			job(msgID(8), "u/hank", "alice", "hank", "gone", 1),    // invalid token
			job(msgID(9), "g/gone", "alice", "gone", "x", 1),       // a deleted group: nobody
		},
		profiles: map[string]storage.PushProfile{
			"alice": {Preview: true, Devices: []storage.PushDevice{device("alice", "t-alice")}},
			"bob":   {Preview: true, Devices: []storage.PushDevice{device("bob", "t-bob")}},
			"carol": {Preview: true, Devices: []storage.PushDevice{device("carol", "t-carol")},
				Mutes: map[string]time.Time{"u/alice": {}}},
			"dave":  {Preview: false, Devices: []storage.PushDevice{device("dave", "t-dave")}},
			"erin":  {Preview: true, Devices: []storage.PushDevice{device("erin", "t-erin")}},
			"frank": {Preview: true, Devices: []storage.PushDevice{device("frank", "t-frank")}},
			"gina":  {Preview: true, Devices: []storage.PushDevice{device("gina", "t-gina")}},
			"hank":  {Preview: true, Devices: []storage.PushDevice{device("hank", "t-hank")}},
		},
		groups: map[string]storage.Group{"team": {ID: "team", Name: "Team", Members: []storage.Member{
			{User: "alice"}, {User: "bob"}, {User: "frank"}}}},
	}
	rec := &recorder{scripts: map[string][]push.Result{
		"t-gina": {{Outcome: push.Retryable, Reason: "TooManyRequests", RetryAfter: 50 * time.Millisecond}},
		"t-hank": {{Outcome: push.InvalidToken, Reason: "Unregistered"}},
	}}
	s := push.NewService(push.ServiceConfig{Grace: time.Second, Poll: 10 * time.Millisecond}, st, rec, testLogger(t))
	s.Delivered("erin", "u/erin", msgID(5))
	s.Start(context.Background())
	defer s.Close()
	testwait.Until(t, 10*time.Second, "an empty queue", func() bool { return st.left() == 0 })
	s.Close()
	s.Close() // twice is fine

	got := map[string][]push.Notification{}
	for _, x := range rec.all() {
		got[x.token] = append(got[x.token], x.n)
	}
	want := map[string]int{"t-bob": 2, "t-dave": 1, "t-frank": 1, "t-gina": 2, "t-hank": 1}
	for tok, n := range want {
		if len(got[tok]) != n {
			t.Errorf("%s got %d sends, want %d", tok, len(got[tok]), n)
		}
	}
	for tok := range got {
		if _, ok := want[tok]; !ok {
			t.Errorf("%s got %d sends, want none", tok, len(got[tok]))
		}
	}
	var dm, group push.Notification
	for _, n := range got["t-bob"] {
		if n.ThreadID == "u/alice" {
			dm = n
		} else {
			group = n
		}
	}
	if dm.Title != "Name of alice" || dm.Body != "two" || dm.Badge != 7 || dm.Data["seq"] != "2" || dm.Data["id"] != msgID(2) ||
		dm.Data["count"] != "2" || dm.Data["inbox"] != "u/bob" {
		t.Errorf("bob's DM notification = %+v", dm)
	}
	if group.Title != "Name of alice @ Team" || group.Body != "standup" || group.ThreadID != "g/team" || group.Data["count"] != "" {
		t.Errorf("bob's group notification = %+v", group)
	}
	if n := got["t-dave"][0]; n.Body != push.HiddenPreview || n.Title != "" || n.ThreadID != "" || !n.ContentFree ||
		n.Data[push.DataInbox] != "u/dave" || n.Data[push.DataID] != msgID(4) {
		t.Errorf("dave's notification (previews off) = %+v, want content-free", n)
	}
	if !slices.Equal(st.removed, []string{"t-hank"}) {
		t.Errorf("removed tokens = %v", st.removed)
	}
}
