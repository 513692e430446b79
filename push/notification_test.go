package push_test

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/parleychat/parley/push"
)

func TestNewNotification(t *testing.T) {
	sent := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	long := strings.Repeat("word ", 100)
	tests := []struct {
		name       string
		msg        push.Message
		wantTitle  string
		wantBody   string
		wantThread string
	}{
		{"direct message",
			push.Message{SenderName: "Alice", Text: "hi Bob", Preview: true, Inbox: "u/bob", Conversation: "u/alice"},
			"Alice", "hi Bob", "u/alice"},
		{"group message",
			push.Message{SenderName: "Alice", GroupName: "Team", Text: "hi all", Preview: true, Inbox: "g/team"},
			"Alice @ Team", "hi all", "g/team"},
		{"preview off",
			push.Message{SenderName: "Alice", Text: "secret plans", Preview: false, Inbox: "u/bob", Conversation: "u/alice"},
			"", push.HiddenPreview, ""},
		{"preview off in a group",
			push.Message{SenderName: "Alice", GroupName: "Team", Text: "secret plans", Preview: false, Inbox: "g/team"},
			"", push.HiddenPreview, ""},
		{"no text",
			push.Message{SenderName: "Alice", Text: "  \n ", Preview: true, Inbox: "u/bob"},
			"Alice", push.HiddenPreview, "u/bob"},
		{"long text",
			push.Message{SenderName: "Alice", Text: long, Preview: true, Inbox: "u/bob"},
			"Alice", strings.TrimSpace(long[:push.MaxBodyRunes-1]) + "…", "u/bob"},
		{"long names",
			push.Message{SenderName: strings.Repeat("A", 80), GroupName: strings.Repeat("G", 80), Text: "x", Preview: true},
			strings.Repeat("A", 80) + " @ " + strings.Repeat("G", push.MaxTitleRunes-1-83) + "…", "x", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.msg
			m.Badge, m.Seq, m.ID, m.Time = 7, 42, "m1", sent
			n := push.NewNotification(m)
			if n.Title != tt.wantTitle {
				t.Errorf("Title = %q, want %q", n.Title, tt.wantTitle)
			}
			if n.Body != tt.wantBody {
				t.Errorf("Body = %q, want %q", n.Body, tt.wantBody)
			}
			if n.ThreadID != tt.wantThread {
				t.Errorf("ThreadID = %q, want %q", n.ThreadID, tt.wantThread)
			}
			if n.Badge != 7 {
				t.Errorf("Badge = %d, want 7", n.Badge)
			}
			if n.ContentFree != !m.Preview {
				t.Errorf("ContentFree = %v with Preview %v", n.ContentFree, m.Preview)
			}
			wantData := map[string]string{push.DataInbox: m.Inbox, push.DataSeq: "42", push.DataID: "m1"}
			if len(n.Data) != len(wantData) {
				t.Errorf("Data = %v, want %v", n.Data, wantData)
			}
			for k, v := range wantData {
				if n.Data[k] != v {
					t.Errorf("Data[%q] = %q, want %q", k, n.Data[k], v)
				}
			}
			if want := sent.Add(push.DefaultTTL); !n.Expiry.Equal(want) {
				t.Errorf("Expiry = %v, want %v", n.Expiry, want)
			}
		})
	}

	t.Run("no time, negative badge", func(t *testing.T) {
		n := push.NewNotification(push.Message{SenderName: "A", Badge: -1})
		if !n.Expiry.IsZero() || n.Badge != 0 {
			t.Errorf("Expiry = %v, Badge = %d; want zero, 0", n.Expiry, n.Badge)
		}
	})
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		name string
		in   string
		max  int
		want string
	}{
		{"fits", "hello", 5, "hello"},
		{"trimmed then fits", "  hello \n", 5, "hello"},
		{"ascii", "hello world", 8, "hello w…"},
		{"no space before ellipsis", "hello world", 7, "hello…"},
		{"two-byte runes", "ééééé", 4, "ééé…"},
		{"four-byte runes", "😀😀😀😀", 3, "😀😀…"},
		{"combining accent kept with its letter", "cafe\u0301st", 6, "cafe\u0301…"},
		{"combining accent dropped with its letter", "cafe\u0301s", 5, "caf…"},
		{"combining accent not split from its letter", "abcde\u0301f", 6, "abcd…"},
		{"zwj sequence dropped whole", "ab👩\u200d👩\u200d👧", 5, "ab…"},
		{"skin tone kept with its emoji", "ab👍🏽cd", 4, "ab…"},
		{"variation selector kept", "ab❤\ufe0fcd", 5, "ab❤\ufe0f…"},
		{"invalid utf-8 replaced", "ab\xffcd", 10, "ab\uFFFDcd"},
		{"max 1", "hello", 1, "…"},
		{"max 0", "hello", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := push.Truncate(tt.in, tt.max)
			if got != tt.want {
				t.Errorf("Truncate(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
			}
		})
	}
}

// FuzzTruncate checks Truncate's promises on any text: valid UTF-8, at most
// max runes, and the start of the (trimmed) input when it was cut.
func FuzzTruncate(f *testing.F) {
	for _, s := range []string{"hello world", "ééééé", "ab👩\u200d👩\u200d👧", "cafe\u0301s", "ab\xffcd", " \t"} {
		f.Add(s, 4)
	}
	f.Fuzz(func(t *testing.T, s string, max int) {
		max = max%300 + 1
		if max <= 0 {
			max += 300
		}
		got := push.Truncate(s, max)
		if !utf8.ValidString(got) {
			t.Fatalf("Truncate(%q, %d) = %q: invalid UTF-8", s, max, got)
		}
		if n := utf8.RuneCountInString(got); n > max {
			t.Fatalf("Truncate(%q, %d) = %q: %d runes", s, max, got, n)
		}
		clean := strings.TrimSpace(strings.ToValidUTF8(s, "\uFFFD"))
		if got == clean {
			return
		}
		kept, ok := strings.CutSuffix(got, "…")
		if !ok || !strings.HasPrefix(clean, kept) {
			t.Fatalf("Truncate(%q, %d) = %q: not a prefix of the input with an ellipsis", s, max, got)
		}
	})
}
