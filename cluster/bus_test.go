package cluster

import "testing"

func TestSubjects(t *testing.T) {
	b := &Bus{cfg: Config{Prefix: "parley"}}
	cases := []struct{ topic, subject string }{
		{"u/alice", "parley.inbox.u.alice"},
		{"u/alice.smith", "parley.inbox.u.alice~smith"},
		{"g/0192f3a4-trip", "parley.inbox.g.0192f3a4-trip"},
		{"u/+", "parley.inbox.u.*"},
		{"#", "parley.inbox.>"},
		{"+/bob", "parley.inbox.*.bob"},
	}
	for _, c := range cases {
		if got := b.subject(c.topic); got != c.subject {
			t.Errorf("subject(%q) = %q, want %q", c.topic, got, c.subject)
		}
		if c.topic[len(c.topic)-1] == '+' || c.topic[0] == '+' || c.topic == "#" {
			continue
		}
		if back, ok := b.inbox(c.subject); !ok || back != c.topic {
			t.Errorf("inbox(%q) = %q, %v; want %q", c.subject, back, ok, c.topic)
		}
	}
	if _, ok := b.inbox("other.inbox.u.alice"); ok {
		t.Error("a subject outside the prefix maps to an inbox")
	}
}

func TestSubjectMatches(t *testing.T) {
	cases := []struct {
		pattern, subject string
		want             bool
	}{
		{"parley.inbox.u.alice", "parley.inbox.u.alice", true},
		{"parley.inbox.u.alice", "parley.inbox.u.bob", false},
		{"parley.inbox.u.*", "parley.inbox.u.bob", true},
		{"parley.inbox.u.*", "parley.inbox.g.bob", false},
		{"parley.inbox.>", "parley.inbox.g.x", true},
		{"parley.inbox.u.>", "parley.inbox.u", false},
		{"parley.inbox.*", "parley.inbox.u.alice", false},
		{"parley.inbox.u.alice", "parley.inbox.u", false},
	}
	for _, c := range cases {
		if got := subjectMatches(c.pattern, c.subject); got != c.want {
			t.Errorf("subjectMatches(%q, %q) = %v, want %v", c.pattern, c.subject, got, c.want)
		}
	}
}
