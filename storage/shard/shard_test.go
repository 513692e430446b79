package shard

import (
	"strings"
	"testing"
)

// TestBucketIsFNV1a pins the buckets of a few inboxes, computed apart
// from this package (FNV-1a 32: offset basis 0x811c9dc5, prime 0x01000193):
// a change of hash would put every stored inbox in the wrong bucket.
func TestBucketIsFNV1a(t *testing.T) {
	for inbox, want := range map[string]int{"u/alice": 1087, "u/bob": 188, "g/k3x7abc": 3156, "u/": 1837} {
		if got := Bucket(inbox); got != want {
			t.Errorf("Bucket(%q) = %d, want %d", inbox, got, want)
		}
	}
}

func TestBucketsSpread(t *testing.T) {
	counts := make([]int, Buckets)
	const n = 409_600
	for i := range n {
		counts[Bucket("u/user"+strings.Repeat("x", i%3)+itoa(i))]++
	}
	for b, c := range counts {
		// 100 expected per bucket; a uniform hash stays well within ±50%.
		if c < 50 || c > 150 {
			t.Fatalf("bucket %d holds %d of %d inboxes, expected ~100", b, c, n)
		}
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

func TestMaps(t *testing.T) {
	m := Even(3)
	if err := m.Validate(3); err != nil {
		t.Fatal(err)
	}
	if c := m.Counts(3); c[0] != 1366 || c[1] != 1365 || c[2] != 1365 {
		t.Fatalf("Even(3) counts %v", c)
	}
	if m.Of("u/alice") != 1087%3 {
		t.Fatalf("Of(u/alice) = %d", m.Of("u/alice"))
	}
	if err := m.Validate(2); err == nil {
		t.Fatal("Validate(2) of a 3-shard map passed")
	}
	if err := Map(make([]int, 10)).Validate(1); err == nil {
		t.Fatal("a short map passed Validate")
	}
	s := Single()
	if c := s.Counts(2); c[0] != Buckets || c[1] != 0 {
		t.Fatalf("Single counts %v", c)
	}
	if r := s.Ranges(0); r != "0-4095" {
		t.Fatalf("Single ranges %q", r)
	}
	if r := Even(2).Ranges(1); !strings.HasPrefix(r, "1,3,5,") || !strings.Contains(r, "(2048 ranges)") {
		t.Fatalf("Even(2) ranges of shard 1: %q", r)
	}
	if r := Single().Ranges(1); r != "" {
		t.Fatalf("ranges of a shard without buckets: %q", r)
	}
}
