package auth

import (
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"

	"github.com/parleychat/parley/protocol"
)

// Skeleton returns the form of a display name that an id could be
// mistaken for: a name whose skeleton is protocol.IDSkeleton(id) reads as that id.
// It is a compact take on the skeletons of Unicode TS #39 (confusable
// detection) for what ids are made of, a-z, 0-9, '_', '.' and '-':
//
//   - compatibility forms become their plain letters (NFKC): fullwidth
//     "ａｌｉｃｅ", mathematical "𝐚𝐥𝐢𝐜𝐞", ligatures;
//   - letters of other scripts that look like Latin ones become those
//     (confusables): Cyrillic "аlісе", Greek "αlιce", dotless ı, script ℓ;
//   - then lower case, and the folds of protocol.IDSkeleton, i and l among them:
//     a capital I looks like an l in most fonts, so "ALICE" and "AIice"
//     both read as alice.
//
// White space and marks are kept: "al ice" and "alíce" are told apart
// from "alice" by anyone reading them.
func Skeleton(name string) string {
	name = norm.NFKC.String(name)
	var b strings.Builder
	for _, r := range name {
		if c, ok := confusables[r]; ok {
			r = c
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return protocol.FoldASCII(b.String())
}

// confusables maps letters that look like Latin letters to them (after
// NFKC): Cyrillic, Greek and Latin look-alikes from Unicode's
// confusables.txt, those that pass for a letter of an id.
var confusables = map[rune]rune{
	// Cyrillic, lower case.
	'а': 'a', 'в': 'b', 'е': 'e', 'һ': 'h', 'і': 'i', 'ј': 'j', 'к': 'k', 'ӏ': 'l', 'м': 'm', 'н': 'h',
	'о': 'o', 'р': 'p', 'ԁ': 'd', 'ԛ': 'q', 'с': 'c', 'т': 't', 'у': 'y', 'ѕ': 's', 'ԝ': 'w', 'х': 'x',
	'ь': 'b', 'г': 'r', 'п': 'n', 'ѵ': 'v', 'ү': 'y',
	// Cyrillic, upper case.
	'А': 'a', 'В': 'b', 'Е': 'e', 'Ѕ': 's', 'І': 'l', 'Ј': 'j', 'К': 'k', 'М': 'm', 'Н': 'h', 'О': 'o',
	'Р': 'p', 'С': 'c', 'Т': 't', 'Х': 'x', 'У': 'y', 'Ԛ': 'q', 'Ԝ': 'w', 'Ӏ': 'l',
	// Greek, lower case.
	'α': 'a', 'β': 'b', 'γ': 'y', 'ε': 'e', 'η': 'n', 'ι': 'i', 'κ': 'k', 'ν': 'v', 'ο': 'o', 'ρ': 'p',
	'τ': 't', 'υ': 'u', 'χ': 'x', 'ω': 'w',
	// Greek, upper case.
	'Α': 'a', 'Β': 'b', 'Ε': 'e', 'Ζ': 'z', 'Η': 'h', 'Ι': 'l', 'Κ': 'k', 'Μ': 'm', 'Ν': 'n', 'Ο': 'o',
	'Ρ': 'p', 'Τ': 't', 'Υ': 'y', 'Χ': 'x',
	// Latin look-alikes NFKC leaves.
	'ı': 'i', 'ȷ': 'j', 'ɑ': 'a', 'ɡ': 'g', 'ɩ': 'i', 'ʟ': 'l', 'ǀ': 'l', 'ɪ': 'i', 'ᴏ': 'o', 'ᴄ': 'c',
	'ѡ': 'w', '|': 'l', '∣': 'l', 'ℓ': 'l', 'Ɩ': 'l',
}
