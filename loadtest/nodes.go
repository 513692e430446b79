package loadtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"

	"github.com/parleychat/parley/loadtest/parleyapi"
)

// Several brokers, the nodes of a Parley cluster: every workload spreads its
// connections over Config.Brokers (client i on broker i mod N), the dm
// workload sends most DMs to a user on another broker, and publish → delivery
// is reported for receivers on the sender's broker and on another one apart.
// With one broker everything is as it was.

// broker returns the address client i connects to: Brokers[i mod N].
func (r *run) broker(i int) string { return r.cfg.Brokers[nodeOf(i, len(r.cfg.Brokers))] }

// nodeOf returns the broker, of n, that client i connects to.
func nodeOf(i, n int) int { return i % n }

// rawPublisherNode returns the broker, of n, that raw publisher i connects
// to: the next one after subscriber i's, so that in pairs (publisher i →
// topic i ← subscriber i) every message crosses from one broker to another.
func rawPublisherNode(i, n int) int { return (i + 1) % n }

// usersOn counts the users, of n, on broker b of nodes (users b, b+nodes, …).
func usersOn(b, n, nodes int) int {
	if b >= n {
		return 0
	}
	return (n - b + nodes - 1) / nodes
}

// peerPicker picks the recipients of DMs: users are spread over nodes
// brokers as clients are (user i on broker i mod nodes).
type peerPicker struct {
	users, nodes int
	cross        float64 // with several brokers, the share of DMs to a user on another broker
}

// pick returns a random recipient for user i, never i. With one broker it is
// uniform over the other users, as it always was. With several it is, with
// probability cross, uniform over the users on other brokers, and otherwise
// uniform over the others on i's own broker (on another broker when i is
// alone on its own). rng is the sender's own.
func (p peerPicker) pick(rng *rand.Rand, i int) int {
	n, nodes := p.users, p.nodes
	if nodes <= 1 {
		peer := rng.IntN(n - 1)
		if peer >= i {
			peer++
		}
		return peer
	}
	b := nodeOf(i, nodes)
	own := usersOn(b, n, nodes)
	if own > 1 && rng.Float64() >= p.cross {
		return sameNodePeer(rng.IntN(own-1), i, nodes)
	}
	return otherNodePeer(rng.IntN(n-own), b, nodes)
}

// sameNodePeer returns the k-th user, 0 ≤ k < usersOn(b)−1, of user i's
// broker b, i left out: users b, b+nodes, … are 0, 1, … there.
func sameNodePeer(k, i, nodes int) int {
	if k >= i/nodes {
		k++
	}
	return nodeOf(i, nodes) + k*nodes
}

// otherNodePeer returns the k-th user, in increasing order, that is not on
// broker b: each run of nodes consecutive users holds nodes−1 of them.
func otherNodePeer(k, b, nodes int) int {
	off := k % (nodes - 1)
	if off >= b {
		off++
	}
	return (k/(nodes-1))*nodes + off
}

// apis provisions through several Parley nodes at once, which share their
// store: users and groups are split into contiguous parts, part k through
// node k. A user provisioned through one node connects to whichever broker
// its index gives, so a run also checks that tokens work across nodes.
type apis []nodeAPI

// nodeAPI is one node's API, named by its HTTP root for errors.
type nodeAPI struct {
	Provisioner
	base string
}

// parts splits n items into len(a) contiguous parts, some empty when n is
// smaller: part k is [k·n/len(a), (k+1)·n/len(a)).
func (a apis) parts(n int) [][2]int {
	out := make([][2]int, len(a))
	for k := range a {
		out[k] = [2]int{k * n / len(a), (k + 1) * n / len(a)}
	}
	return out
}

// Provision creates the users, each part through its node, and returns
// their credentials in order.
func (a apis) Provision(ctx context.Context, users []parleyapi.User) ([]parleyapi.Credential, error) {
	out := make([]parleyapi.Credential, len(users))
	err := a.each(len(users), func(p nodeAPI, lo, hi int) error {
		creds, err := p.Provision(ctx, users[lo:hi])
		if err != nil {
			return fmt.Errorf("through %s: %w", p.base, err)
		}
		if len(creds) != hi-lo {
			return fmt.Errorf("provision users through %s: asked for %d, got %d", p.base, hi-lo, len(creds))
		}
		copy(out[lo:hi], creds)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CreateGroups creates the groups, each part through its node, and returns
// their ids in order.
func (a apis) CreateGroups(ctx context.Context, groups []parleyapi.Group) ([]string, error) {
	out := make([]string, len(groups))
	err := a.each(len(groups), func(p nodeAPI, lo, hi int) error {
		ids, err := p.CreateGroups(ctx, groups[lo:hi])
		if err != nil {
			return fmt.Errorf("through %s: %w", p.base, err)
		}
		if len(ids) != hi-lo {
			return fmt.Errorf("create groups through %s: asked for %d, got %d ids", p.base, hi-lo, len(ids))
		}
		copy(out[lo:hi], ids)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// each runs fn for every non-empty part of n items, all at once, and joins
// their errors.
func (a apis) each(n int, fn func(p nodeAPI, lo, hi int) error) error {
	parts := a.parts(n)
	errs := make([]error, len(a))
	var wg sync.WaitGroup
	for k, p := range a {
		lo, hi := parts[k][0], parts[k][1]
		if lo == hi {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[k] = fn(p, lo, hi)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
