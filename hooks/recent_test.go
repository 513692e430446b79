package hooks

import (
	"fmt"
	"testing"
)

func TestRecentIDs(t *testing.T) {
	var r recentIDs
	if r.has("a") {
		t.Fatal("empty set has a")
	}
	r.add("a")
	r.add("a")
	if !r.has("a") {
		t.Fatal("a forgotten at once")
	}
	for i := range recentMax - 1 {
		r.add(fmt.Sprint(i))
	}
	if !r.has("a") || len(r.set) != recentMax {
		t.Fatalf("a forgotten before the ring was full (%d ids)", len(r.set))
	}
	r.add("b")
	if r.has("a") || !r.has("b") || len(r.set) != recentMax {
		t.Fatalf("the oldest id is not the one forgotten (%d ids)", len(r.set))
	}
}
