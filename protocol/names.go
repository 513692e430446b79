package protocol

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxNameLen is the most characters (runes) of a display name: a user's
// or a group's.
const MaxNameLen = 128

// CleanName returns a display name as Parley stores and shows it, and
// whether it is acceptable. It removes what can make a name look like
// something it is not, none of which a real name needs:
//
//   - bidirectional controls (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F,
//     U+061C), which reorder what follows them: "Alice\u202Eelgoog" shows
//     as "Alicegoogle";
//   - invisible characters (zero-width space U+200B, word joiner U+2060,
//     byte order mark U+FEFF, soft hyphen U+00AD), which make two
//     different names look the same;
//   - control characters (newlines, tabs, escapes), which break the lines
//     a name is shown in;
//
// and trims surrounding white space. The zero-width joiner (U+200D) stays:
// emoji sequences need it. A name is acceptable when it is valid UTF-8 and
// has 1 to MaxNameLen characters left.
func CleanName(name string) (string, bool) {
	if !utf8.ValidString(name) {
		return "", false
	}
	name = strings.Map(func(r rune) rune {
		switch {
		case r >= 0x202A && r <= 0x202E, r >= 0x2066 && r <= 0x2069, r == 0x200E, r == 0x200F, r == 0x061C,
			r == 0x200B, r == 0x2060, r == 0xFEFF, r == 0x00AD:
			return -1
		case unicode.IsControl(r):
			return -1
		}
		return r
	}, name)
	name = strings.TrimSpace(name)
	n := utf8.RuneCountInString(name)
	return name, n >= 1 && n <= MaxNameLen
}
