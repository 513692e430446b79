package hooks

import (
	"slices"
	"testing"
	"time"
)

func TestGapTracker(t *testing.T) {
	g := newGapTracker()
	t0 := time.Unix(1000, 0)
	g.seen("u/bob", 5, t0) // not watched: ignored
	if g.tracked() != 0 {
		t.Fatal("an unwatched inbox is tracked")
	}
	g.watch("u/bob")
	g.seen("u/bob", 5, t0) // the first: no gap below it
	g.seen("u/bob", 6, t0)
	g.seen("u/bob", 9, t0) // 7 and 8 missing
	g.seen("u/bob", 7, t0.Add(100*time.Millisecond))
	if due := g.due(t0.Add(gapWait - time.Millisecond)); len(due) != 0 {
		t.Fatalf("due before gapWait: %v", due)
	}
	due := g.due(t0.Add(gapWait))
	if !slices.Equal(due["u/bob"], []int64{8}) || len(due) != 1 {
		t.Fatalf("due = %v, want u/bob [8]", due)
	}
	g.filled("u/bob", 8)
	if due := g.due(t0.Add(time.Hour)); len(due) != 0 {
		t.Fatalf("due after filling: %v", due)
	}
	// A jump beyond maxMissing remembers maxMissing seqs.
	g.seen("u/bob", 9+maxMissing+10, t0)
	if n := g.missing("u/bob"); n != maxMissing {
		t.Fatalf("%d missing remembered, want %d", n, maxMissing)
	}
	g.forget("u/bob")
	if g.tracked() != 0 {
		t.Fatal("forgotten inbox still tracked")
	}
}
