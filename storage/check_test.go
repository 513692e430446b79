package storage_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/parleychat/parley/storage"
)

func TestCheckKey(t *testing.T) {
	cases := map[string]struct {
		key     string
		invalid bool
	}{
		"empty":                 {"", false},
		"ordinary":              {"alice/phone-1", false},
		"unicode":               {"zoë/📱", false},
		"MaxKeyBytes exactly":   {strings.Repeat("a", storage.MaxKeyBytes), false},
		"one byte over":         {strings.Repeat("a", storage.MaxKeyBytes+1), true},
		"NUL":                   {"a\x00b", true},
		"invalid UTF-8":         {"a\xffb", true},
		"truncated multi-byte":  {"\xe2\x82", true},
		"other control is fine": {"a\tb", false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			err := storage.CheckKey("key", c.key)
			if got := err != nil; got != c.invalid {
				t.Fatalf("CheckKey = %v, want invalid=%v", err, c.invalid)
			}
			if err != nil && !errors.Is(err, storage.ErrInvalid) {
				t.Fatalf("CheckKey = %v, want it to wrap ErrInvalid", err)
			}
		})
	}
}

func TestValidCursors(t *testing.T) {
	good := []storage.Cursor{{ClientID: "a", Inbox: "u/a", Seq: 1}, {ClientID: "b", Inbox: "u/b", Seq: 2}}
	valid, dropped, why := storage.ValidCursors(good)
	if len(valid) != 2 || dropped != 0 || why != nil || &valid[0] != &good[0] {
		t.Fatalf("all good: %v, %d, %v; want the same slice back", valid, dropped, why)
	}
	mixed := []storage.Cursor{good[0], {ClientID: "x\x00", Inbox: "u/a"}, good[1], {ClientID: "c", Inbox: strings.Repeat("i", 2000)}}
	valid, dropped, why = storage.ValidCursors(mixed)
	if len(valid) != 2 || valid[0] != good[0] || valid[1] != good[1] || dropped != 2 || !errors.Is(why, storage.ErrInvalid) {
		t.Fatalf("mixed: %v, %d, %v; want the two good ones, 2 dropped", valid, dropped, why)
	}
	if mixed[0] != good[0] || mixed[2] != good[1] {
		t.Fatal("ValidCursors changed its argument")
	}
}
