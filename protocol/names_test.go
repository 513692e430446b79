package protocol

import (
	"strings"
	"testing"
)

func TestCleanName(t *testing.T) {
	cases := map[string]struct {
		in, want string
		ok       bool
	}{
		"plain":                  {"Alice", "Alice", true},
		"right-to-left override": {"Alice\u202eelgoog", "Aliceelgoog", true},
		"isolates and marks":     {"\u2067Bob\u2069\u200f", "Bob", true},
		"zero-width space":       {"Ca\u200brol", "Carol", true},
		"newline and tab":        {"Dave\n(admin)\t", "Dave(admin)", true},
		"surrounding spaces":     {"  Erin  ", "Erin", true},
		"emoji sequence kept":    {"Fay 👩\u200d💻", "Fay 👩\u200d💻", true},
		"only invisible":         {"\u202e\u200b ", "", false},
		"empty":                  {"", "", false},
		"too long":               {strings.Repeat("é", 129), "", false},
		"invalid UTF-8":          {"a\xffb", "", false},
		"128 characters":         {strings.Repeat("é", 128), strings.Repeat("é", 128), true},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got, ok := CleanName(c.in)
			if ok != c.ok || (c.want != "" && got != c.want) {
				t.Fatalf("CleanName(%q) = %q, %v; want %q, %v", c.in, got, ok, c.want, c.ok)
			}
		})
	}
}
