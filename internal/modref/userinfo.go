package modref

import "strings"

// errCredentials is why a URL with user:password@ is refused.
const errCredentials = "credentials in module URLs are not supported; use imagePullSecret or a docker config"

// userinfo returns the span raw[start:end] holding credentials (the text
// before "@" in the authority), or ok=false when there is none.
//
// In an OCI reference without a "/", an "@" is a digest separator when
// sha256: follows it; otherwise it is taken for credentials, so that
// "user:password@host" is refused, not echoed in a digest error.
func userinfo(raw string) (start, end int, ok bool) {
	if isRelativeFile(raw) {
		return 0, 0, false
	}
	rest, oci := raw, true
	if scheme, after, found := strings.Cut(raw, "://"); found && schemeRE.MatchString(scheme) {
		start, rest, oci = len(scheme)+3, after, strings.EqualFold(scheme, "oci")
	}
	if oci {
		return ociUserinfo(start, rest)
	}
	authority := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority = rest[:i]
	}
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		return start, start + at, true
	}
	return 0, 0, false
}

// ociUserinfo finds credentials in rest, an OCI reference at raw[start:].
func ociUserinfo(start int, rest string) (int, int, bool) {
	if slash := strings.IndexByte(rest, '/'); slash >= 0 {
		if at := strings.LastIndexByte(rest[:slash], '@'); at >= 0 {
			return start, start + at, true
		}
		return 0, 0, false
	}
	at := strings.IndexByte(rest, '@')
	if at < 0 || strings.HasPrefix(strings.ToLower(rest[at+1:]), sha256Prefix) {
		return 0, 0, false
	}
	return start, start + at, true
}

// redact replaces the credentials in raw, if any, by xxxxx.
func redact(raw string) string {
	if start, end, ok := userinfo(raw); ok {
		return raw[:start] + "xxxxx" + raw[end:]
	}
	return raw
}

func isRelativeFile(raw string) bool {
	return len(raw) >= 5 && strings.EqualFold(raw[:5], "file:") && !strings.HasPrefix(raw[5:], "//")
}
