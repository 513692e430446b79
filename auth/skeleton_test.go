package auth

import (
	"testing"

	"github.com/parleychat/parley/protocol"
)

func TestSkeleton(t *testing.T) {
	for _, c := range []struct {
		name, id string
		same     bool
	}{
		{"alice", "alice", true},
		{"Alice", "alice", true},
		{"ALICE", "alice", true},
		{"AIice", "alice", true}, // capital I for the l
		{"аlісе", "alice", true}, // Cyrillic а, і, с, е
		{"αlιce", "alice", true}, // Greek α, ι
		{"ａｌｉｃｅ", "alice", true}, // fullwidth
		{"𝐚𝐥𝐢𝐜𝐞", "alice", true}, // mathematical bold
		{"a1ice", "alice", true}, // digit one
		{"alice", "a1ice", true},
		{"b0b", "bob", true},
		{"rnallory", "mallory", true},
		{"vvendy", "wendy", true},
		{"ℓeo", "leo", true},
		{"al ice", "alice", false},
		{"alíce", "alice", false},
		{"Alice Smith", "alice", false},
		{"bob", "alice", false},
	} {
		if got := Skeleton(c.name) == protocol.IDSkeleton(c.id); got != c.same {
			t.Errorf("Skeleton(%q) = %q, IDSkeleton(%q) = %q: same %v, want %v", c.name, Skeleton(c.name), c.id, protocol.IDSkeleton(c.id), got, c.same)
		}
	}
}
