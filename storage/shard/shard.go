// Package shard places inboxes on the databases of a sharded store: every
// inbox belongs to one of Buckets buckets by a stable hash of its name, and
// a Map says which shard (database) holds each bucket. The map and each
// database's own index live in the databases themselves (Prepare), in a
// schema of their own, parley_shard, apart from the data the store copier
// moves. docs/sharding.md is the design.
package shard

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// Buckets is the number of buckets: room for ~400 shards of ten buckets,
// in a map of 8 KiB.
const Buckets = 4096

// MaxShards is the most shards a Map may name.
const MaxShards = Buckets

// Bucket returns the bucket of an inbox ("u/alice", "g/k3x…"): FNV-1a
// (32 bits) of its name, modulo Buckets. FNV-1a is fixed by its
// definition: the bucket of an inbox is the same in every process, on
// every node, with every Go release (hash/maphash is seeded, and would
// not be).
func Bucket(inbox string) int {
	h := fnv.New32a()
	h.Write([]byte(inbox)) // never fails
	return int(h.Sum32() % Buckets)
}

// Map says which shard holds each bucket: Map[b] is the index, in
// database.shards, of bucket b's shard.
type Map []int

// Even returns the map of a new deployment of n shards: bucket b on shard
// b mod n.
func Even(n int) Map {
	m := make(Map, Buckets)
	for b := range m {
		m[b] = b % n
	}
	return m
}

// Single returns the map that puts every bucket on shard 0: where a store
// that already holds inboxes starts when more shards are added, so that
// none of its inboxes moves until a bucket move moves it.
func Single() Map { return make(Map, Buckets) }

// Of returns the shard of an inbox.
func (m Map) Of(inbox string) int { return m[Bucket(inbox)] }

// Validate reports whether m is a map of Buckets buckets onto shards 0 to
// n-1.
func (m Map) Validate(n int) error {
	if len(m) != Buckets {
		return fmt.Errorf("shard map has %d buckets, want %d", len(m), Buckets)
	}
	for b, s := range m {
		if s < 0 || s >= n {
			return fmt.Errorf("shard map puts bucket %d on shard %d; there are %d shards (database.shards)", b, s, n)
		}
	}
	return nil
}

// Counts returns how many buckets each of n shards holds.
func (m Map) Counts(n int) []int {
	c := make([]int, n)
	for _, s := range m {
		if s >= 0 && s < n {
			c[s]++
		}
	}
	return c
}

// Ranges returns shard s's buckets as ranges, "0-1023,2048", for people
// to read.
func (m Map) Ranges(s int) string {
	var parts []string
	for b := 0; b < len(m); {
		if m[b] != s {
			b++
			continue
		}
		e := b
		for e+1 < len(m) && m[e+1] == s {
			e++
		}
		if e == b {
			parts = append(parts, strconv.Itoa(b))
		} else {
			parts = append(parts, strconv.Itoa(b)+"-"+strconv.Itoa(e))
		}
		b = e + 1
	}
	if len(parts) > 8 {
		return strings.Join(parts[:8], ",") + fmt.Sprintf(",… (%d ranges)", len(parts))
	}
	return strings.Join(parts, ",")
}
