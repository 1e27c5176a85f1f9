// Package statusfmt formats status values for people, so that the
// `wasmxds status` table and the status page show them alike: digests and
// versions shortened, ages, byte sizes, messages on one line and cut to a
// length. An absent value (an empty digest, the zero time) formats as "";
// each view shows absence its own way.
package statusfmt

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// shortLen is how much of a digest or version Short keeps: git's length,
// enough to tell them apart.
const shortLen = 12

// Short abbreviates a digest or version to its first 12 characters.
func Short(id string) string {
	return prefix(id, shortLen)
}

// Age is how long before now t was, to the second ("1m30s"); "" for the
// zero time.
func Age(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return now.Sub(t).Round(time.Second).String()
}

// Ago is Age said as a time in the past ("1m30s ago"); "" for the zero
// time.
func Ago(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return Age(now, t) + " ago"
}

// Size is a byte count in binary units, one decimal past bytes: "512 B",
// "1.5 KiB", "3.0 MiB", "2.0 GiB".
func Size(n int64) string { return size(n, " ") }

// CompactSize is Size with the unit against the number ("3.0MiB"), for a
// table cell.
func CompactSize(n int64) string { return size(n, "") }

func size(n int64, sep string) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d%sB", n, sep)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%s%ciB", float64(n)/float64(div), sep, "KMGTPE"[exp])
}

// Truncate cuts s to at most n characters, the last of them "…" when
// anything was cut. It counts and cuts whole characters (runes), so the
// result is valid UTF-8 whenever s is.
func Truncate(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return prefix(s, n-1) + "…"
}

// prefix is the first n characters (runes) of s.
func prefix(s string, n int) string {
	for i := range s {
		if n == 0 {
			return s[:i]
		}
		n--
	}
	return s
}

// OneLine puts a message on one line: each run of white space, line
// breaks included, becomes one space, and none is left at either end.
func OneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// TypeName is the last part of an xDS type URL: TypedExtensionConfig for
// type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig.
func TypeName(typeURL string) string {
	return typeURL[strings.LastIndex(typeURL, ".")+1:]
}
