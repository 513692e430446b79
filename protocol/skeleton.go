package protocol

import "strings"

// IDSkeleton returns the skeleton of a user id (auth.Skeleton gives a
// display name's, for which this is the last step): ids that differ only by
// characters that look alike (0 and o; 1, i and l; rn and m; vv and w)
// have the same. The stores compute it in SQL in the same order (an index on
// the expression, migration 013): keep them in step.
func IDSkeleton(id string) string { return FoldASCII(id) }

// FoldASCII folds ASCII look-alikes, in this order: 0→o, 1→l, i→l, rn→m,
// vv→w.
func FoldASCII(s string) string {
	s = strings.ReplaceAll(s, "0", "o")
	s = strings.ReplaceAll(s, "1", "l")
	s = strings.ReplaceAll(s, "i", "l")
	s = strings.ReplaceAll(s, "rn", "m")
	return strings.ReplaceAll(s, "vv", "w")
}
