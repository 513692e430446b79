package protocol_test

import (
	"strings"
	"testing"

	"github.com/parleychat/parley/protocol"
)

var (
	id64 = "a" + strings.Repeat("b", protocol.MaxIDLen-1)
	id65 = id64 + "c"
)

func TestParseTopic(t *testing.T) {
	tests := map[string]struct {
		name   string
		want   protocol.Topic
		wantOK bool
	}{
		"user inbox":              {"u/alice", protocol.Topic{Kind: protocol.KindUser, ID: "alice"}, true},
		"group inbox":             {"g/team-1", protocol.Topic{Kind: protocol.KindGroup, ID: "team-1"}, true},
		"presence":                {"p/bob", protocol.Topic{Kind: protocol.KindPresence, ID: "bob"}, true},
		"id with all punctuation": {"u/a.b_c-9", protocol.Topic{Kind: protocol.KindUser, ID: "a.b_c-9"}, true},
		"id of 64 chars":          {"g/" + id64, protocol.Topic{Kind: protocol.KindGroup, ID: id64}, true},

		"id of 65 chars":            {"g/" + id65, protocol.Topic{Kind: protocol.KindGroup}, false},
		"empty id":                  {"u/", protocol.Topic{Kind: protocol.KindUser}, false},
		"empty group id":            {"g/", protocol.Topic{Kind: protocol.KindGroup}, false},
		"empty presence id":         {"p/", protocol.Topic{Kind: protocol.KindPresence}, false},
		"uppercase id":              {"u/Alice", protocol.Topic{Kind: protocol.KindUser}, false},
		"id starting with _":        {"u/_alice", protocol.Topic{Kind: protocol.KindUser}, false},
		"id starting with .":        {"g/.team", protocol.Topic{Kind: protocol.KindGroup}, false},
		"id starting with -":        {"p/-bob", protocol.Topic{Kind: protocol.KindPresence}, false},
		"non-ASCII id":              {"u/alicé", protocol.Topic{Kind: protocol.KindUser}, false},
		"space in id":               {"u/al ice", protocol.Topic{Kind: protocol.KindUser}, false},
		"NUL in id":                 {"u/al\x00ice", protocol.Topic{Kind: protocol.KindUser}, false},
		"extra level":               {"u/alice/x", protocol.Topic{Kind: protocol.KindUser}, false},
		"trailing slash":            {"g/team/", protocol.Topic{Kind: protocol.KindGroup}, false},
		"empty level":               {"u//alice", protocol.Topic{Kind: protocol.KindUser}, false},
		"single-level wildcard":     {"u/+", protocol.Topic{Kind: protocol.KindUser}, false},
		"multi-level wildcard":      {"g/#", protocol.Topic{Kind: protocol.KindGroup}, false},
		"wildcard after id":         {"p/bob/#", protocol.Topic{Kind: protocol.KindPresence}, false},
		"wildcard inside id":        {"u/al+ce", protocol.Topic{Kind: protocol.KindUser}, false},
		"other topic":               {"news/today", protocol.Topic{Kind: protocol.KindOther}, true},
		"empty name":                {"", protocol.Topic{Kind: protocol.KindOther}, true},
		"bare namespace letter":     {"u", protocol.Topic{Kind: protocol.KindOther}, true},
		"lookalike prefix":          {"uber/x", protocol.Topic{Kind: protocol.KindOther}, true},
		"uppercase namespace":       {"U/alice", protocol.Topic{Kind: protocol.KindOther}, true},
		"leading slash":             {"/u/alice", protocol.Topic{Kind: protocol.KindOther}, true},
		"system topic":              {"$SYS/broker/uptime", protocol.Topic{Kind: protocol.KindOther}, true},
		"shared subscription form":  {"$share/g/u/alice", protocol.Topic{Kind: protocol.KindOther}, true},
		"wildcard outside prefixes": {"#", protocol.Topic{Kind: protocol.KindOther}, true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, ok := protocol.ParseTopic(tc.name)
			if got != tc.want || ok != tc.wantOK {
				t.Fatalf("ParseTopic(%q) = %+v, %v; want %+v, %v", tc.name, got, ok, tc.want, tc.wantOK)
			}
			if ok && got.Kind != protocol.KindOther && got.String() != tc.name {
				t.Errorf("ParseTopic(%q).String() = %q, want the name back", tc.name, got.String())
			}
		})
	}
}

func TestTopicString(t *testing.T) {
	tests := map[string]struct {
		topic protocol.Topic
		want  string
	}{
		"user":     {protocol.Topic{Kind: protocol.KindUser, ID: "alice"}, "u/alice"},
		"group":    {protocol.Topic{Kind: protocol.KindGroup, ID: "team"}, "g/team"},
		"presence": {protocol.Topic{Kind: protocol.KindPresence, ID: "bob"}, "p/bob"},
		"other":    {protocol.Topic{Kind: protocol.KindOther}, ""},
		"unknown":  {protocol.Topic{Kind: 99, ID: "x"}, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := tc.topic.String(); got != tc.want {
				t.Errorf("%+v.String() = %q, want %q", tc.topic, got, tc.want)
			}
		})
	}
}

func TestTopicBuilders(t *testing.T) {
	tests := map[string]struct {
		got  string
		want protocol.Topic
	}{
		"UserInbox":     {protocol.UserInbox("alice"), protocol.Topic{Kind: protocol.KindUser, ID: "alice"}},
		"GroupInbox":    {protocol.GroupInbox("team"), protocol.Topic{Kind: protocol.KindGroup, ID: "team"}},
		"PresenceTopic": {protocol.PresenceTopic("bob"), protocol.Topic{Kind: protocol.KindPresence, ID: "bob"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, ok := protocol.ParseTopic(tc.got)
			if !ok || got != tc.want {
				t.Errorf("ParseTopic(%q) = %+v, %v; want %+v, true", tc.got, got, ok, tc.want)
			}
		})
	}
}

func TestIsReserved(t *testing.T) {
	tests := map[string]struct {
		filter string
		want   bool
	}{
		"user inbox":                   {"u/alice", true},
		"group inbox":                  {"g/team", true},
		"presence":                     {"p/bob", true},
		"malformed user topic":         {"u/Alice/x", true},
		"bare u":                       {"u", true},
		"bare g":                       {"g", true},
		"bare p":                       {"p", true},
		"empty user id":                {"u/", true},
		"all users":                    {"u/#", true},
		"every user's presence":        {"p/+", true},
		"multi-level wildcard":         {"#", true},
		"single-level wildcard":        {"+", true},
		"wildcard first level":         {"+/x", true},
		"wildcard first two levels":    {"+/+/y", true},
		"shared user inbox":            {"$share/g/u/x", true},
		"shared everything":            {"$share/grp/#", true},
		"shared wildcard first level":  {"$share/grp/+/x", true},
		"shared bare u":                {"$share/grp/u", true},
		"shared with empty group name": {"$share//u/x", true},

		"lookalike prefix":          {"uber/x", false},
		"lookalike group":           {"gossip", false},
		"lookalike presence":        {"px/1", false},
		"other topic":               {"news/today", false},
		"other with wildcard later": {"news/#", false},
		"wildcard at second level":  {"x/+/u", false},
		"empty":                     {"", false},
		"leading slash":             {"/u/x", false},
		"uppercase namespace":       {"U/x", false},
		"system topics":             {"$SYS/#", false},
		"shared other topic":        {"$share/grp/news", false},
		"shared without filter":     {"$share/grp", false},
		"shared with empty filter":  {"$share/grp/", false},
		"share without dollar":      {"share/grp/u/x", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := protocol.IsReserved(tc.filter); got != tc.want {
				t.Errorf("IsReserved(%q) = %v, want %v", tc.filter, got, tc.want)
			}
		})
	}
}

func TestValidID(t *testing.T) {
	tests := map[string]struct {
		id   string
		want bool
	}{
		"lowercase":            {"alice", true},
		"one letter":           {"a", true},
		"one digit":            {"7", true},
		"leading digit":        {"9lives", true},
		"inner punctuation":    {"a.b_c-d", true},
		"trailing punctuation": {"bob_", true},
		"64 chars":             {id64, true},

		"empty":              {"", false},
		"65 chars":           {id65, false},
		"leading underscore": {"_alice", false},
		"leading dot":        {".alice", false},
		"leading dash":       {"-alice", false},
		"uppercase":          {"Alice", false},
		"uppercase inside":   {"aLice", false},
		"slash":              {"a/b", false},
		"plus":               {"a+b", false},
		"hash":               {"a#", false},
		"space":              {"a b", false},
		"at sign":            {"a@b", false},
		"non-ASCII":          {"zoë", false},
		"NUL":                {"a\x00", false},
		"invalid UTF-8":      {"a\xff", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := protocol.ValidID(tc.id); got != tc.want {
				t.Errorf("ValidID(%q) = %v, want %v", tc.id, got, tc.want)
			}
		})
	}
}

func TestClientIDBelongsTo(t *testing.T) {
	tests := map[string]struct {
		clientID, user string
		want           bool
	}{
		"the user id itself":     {"alice", "alice", true},
		"a device of the user":   {"alice/phone", "alice", true},
		"nested device name":     {"alice/phone/2", "alice", true},
		"empty device name":      {"alice/", "alice", true},
		"longer user id":         {"alice2", "alice", false},
		"longer user id, device": {"alice2/phone", "alice", false},
		"dot instead of slash":   {"alice.phone", "alice", false},
		"dash instead of slash":  {"alice-phone", "alice", false},
		"prefix of the user id":  {"alic", "alice", false},
		"another user's device":  {"bob/alice", "alice", false},
		"empty client id":        {"", "alice", false},
		"different case":         {"Alice", "alice", false},
		"user id as device name": {"phone/alice", "alice", false},
		"user id repeated":       {"alicealice", "alice", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := protocol.ClientIDBelongsTo(tc.clientID, tc.user); got != tc.want {
				t.Errorf("ClientIDBelongsTo(%q, %q) = %v, want %v", tc.clientID, tc.user, got, tc.want)
			}
		})
	}
}

// FuzzParseTopic checks ParseTopic and IsReserved against each other on any
// topic name.
func FuzzParseTopic(f *testing.F) {
	for _, s := range []string{
		"u/alice", "g/team-1", "p/bob", "u/", "u", "uber/x", "u/alice/x", "u/+", "g/#", "#", "+/x",
		"$share/g/u/x", "$SYS/broker", "news/today", "", "/u/alice", "u/" + id64, "u/" + id65, "u/Alice",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		topic, ok := protocol.ParseTopic(name)
		inNamespace := strings.HasPrefix(name, "u/") || strings.HasPrefix(name, "g/") || strings.HasPrefix(name, "p/")
		switch {
		case !inNamespace:
			if topic != (protocol.Topic{Kind: protocol.KindOther}) || !ok {
				t.Fatalf("ParseTopic(%q) = %+v, %v; want KindOther, true", name, topic, ok)
			}
		case ok:
			if topic.Kind == protocol.KindOther || !protocol.ValidID(topic.ID) || topic.String() != name {
				t.Fatalf("ParseTopic(%q) = %+v, true: not a valid id of a namespace", name, topic)
			}
			if strings.ContainsAny(topic.ID, "/+#") {
				t.Fatalf("ParseTopic(%q): id %q has a level separator or wildcard", name, topic.ID)
			}
		default:
			if topic.Kind == protocol.KindOther || topic.ID != "" {
				t.Fatalf("ParseTopic(%q) = %+v, false: want the namespace and no id", name, topic)
			}
		}
		if inNamespace && !protocol.IsReserved(name) {
			t.Fatalf("IsReserved(%q) = false for a name in a namespace", name)
		}
		// Only one $share/{group}/ prefix is stripped [MQTT-4.8.2-1]: a second
		// one is a literal filter, outside every namespace.
		if !strings.HasPrefix(name, "$share/") && protocol.IsReserved("$share/grp/"+name) != protocol.IsReserved(name) {
			t.Fatalf("IsReserved disagrees on %q and its shared form", name)
		}
	})
}
