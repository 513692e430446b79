package auth

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCheckPassword(t *testing.T) {
	for name, c := range map[string]struct {
		pw   string
		want error
	}{
		"ten letters":              {"violet-8mq", nil},
		"a passphrase":             {"correct horse battery", nil},
		"72 bytes":                 {strings.Repeat("k", 72), nil},
		"ten runes, 20 bytes":      {"éèêëàâäôöû", nil},
		"nine":                     {"violet-8m", ErrPasswordLength},
		"eight (the old minimum)":  {"12345-ab", ErrPasswordLength},
		"empty":                    {"", ErrPasswordLength},
		"73 bytes":                 {strings.Repeat("k", 73), ErrPasswordLength},
		"37 runes, 74 bytes":       {strings.Repeat("é", 37), ErrPasswordLength},
		"ten spaces":               {"          ", ErrPasswordBlank},
		"tabs and newlines":        {"\t\t\t\t\t\n\n\n\n\n", ErrPasswordBlank},
		"no-break spaces":          {strings.Repeat("\u00a0", 10), ErrPasswordBlank},
		"common":                   {"password123", ErrPasswordCommon},
		"common, other case":       {"QWERTYUIOP", ErrPasswordCommon},
		"common, spaces around":    {"  1234567890  ", ErrPasswordCommon},
		"common with a year":       {"Summer2024!", ErrPasswordCommon},
		"brokertest's passwords":   {"password-a", nil},
		"web e2e passwords":        {"a-password", nil},
		"not common, only similar": {"password123-violet", nil},
	} {
		t.Run(name, func(t *testing.T) {
			err := CheckPassword(c.pw)
			if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Fatalf("CheckPassword(%q) = %v, want %v", c.pw, err, c.want)
			}
			if err != nil && !errors.Is(err, ErrWeakPassword) {
				t.Fatalf("CheckPassword(%q) = %v, not an ErrWeakPassword", c.pw, err)
			}
		})
	}
}

// TestCommonPasswordsList: every entry could otherwise be chosen (at least
// MinPasswordChars, at most MaxPasswordBytes) and is stored as it is
// compared (lower case, no surrounding space).
func TestCommonPasswordsList(t *testing.T) {
	if len(commonPasswords) < 200 {
		t.Fatalf("%d common passwords, want at least 200", len(commonPasswords))
	}
	for pw := range commonPasswords {
		if utf8.RuneCountInString(pw) < MinPasswordChars || len(pw) > MaxPasswordBytes ||
			pw != strings.ToLower(strings.TrimSpace(pw)) {
			t.Errorf("entry %q: too short or long, or not lower case and trimmed", pw)
		}
	}
}
