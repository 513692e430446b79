package auth

import (
	"strings"
	"unicode/utf8"
)

// Password rule: the one place it is written. Register, ChangePassword and
// SetPassword (hence the API and `parley users add|passwd`) apply it.
const (
	// MinPasswordChars is the fewest characters (runes) a password may have.
	MinPasswordChars = 10
	// MaxPasswordBytes is the most bytes a password may have: bcrypt reads
	// no further, so a longer one would be silently cut.
	MaxPasswordBytes = 72
)

// passwordError is a refused password with the reason shown to the user. It
// is ErrWeakPassword for errors.Is, so callers may test for either.
type passwordError string

func (e passwordError) Error() string        { return string(e) }
func (e passwordError) Is(target error) bool { return target == ErrWeakPassword }

// The reasons a password is refused; each is an ErrWeakPassword.
var (
	ErrPasswordLength = passwordError("password must be at least 10 characters and at most 72 bytes")
	ErrPasswordBlank  = passwordError("password must not be only spaces")
	ErrPasswordCommon = passwordError("password is too common: it is on lists of leaked passwords")
)

// CheckPassword reports whether pw may be a user's new password: nil, or
// ErrPasswordLength, ErrPasswordBlank or ErrPasswordCommon (each is
// ErrWeakPassword). Common passwords are compared case-insensitively and
// without surrounding spaces, so "Password123 " is refused like
// "password123". Existing passwords are not re-checked at sign-in.
func CheckPassword(pw string) error {
	if utf8.RuneCountInString(pw) < MinPasswordChars || len(pw) > MaxPasswordBytes {
		return ErrPasswordLength
	}
	trimmed := strings.TrimSpace(pw)
	if trimmed == "" {
		return ErrPasswordBlank
	}
	if _, ok := commonPasswords[strings.ToLower(trimmed)]; ok {
		return ErrPasswordCommon
	}
	return nil
}
