package modref

import "strings"

const sha256Prefix = "sha256:"

// ParseSHA256 parses a sha256 pin or digest: 64 hex digits in any case,
// optionally prefixed with "sha256:" (in any case). It returns the 64
// lowercase hex digits.
func ParseSHA256(s string) (string, error) {
	hex := s
	if len(s) >= len(sha256Prefix) && strings.EqualFold(s[:len(sha256Prefix)], sha256Prefix) {
		hex = s[len(sha256Prefix):]
	}
	hex = strings.ToLower(hex)
	if !ValidHex(hex) {
		return "", &Error{What: "sha256", Ref: s, Reason: "want 64 hex digits, optionally prefixed with sha256:"}
	}
	return hex, nil
}

// ValidHex reports whether s is exactly 64 lowercase hex digits: the form
// of every sha256 this project stores, serves and compares.
func ValidHex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
