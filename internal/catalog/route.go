package catalog

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// headerNameRE is an HTTP field name (RFC 9110 token), or an HTTP/2
// pseudo-header such as :authority.
var headerNameRE = regexp.MustCompile("^:?[A-Za-z0-9!#$%&'*+.^_`|~-]+$")

// retryConditions are the retry_on conditions of Envoy's router that need
// no more configuration than a count.
var retryConditions = []string{
	"5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "envoy-ratelimited",
	"retriable-4xx", "refused-stream", "http3-post-connect-failure",
	"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
}

// defaultRetryOn retries only requests that never reached the upstream
// application, which is safe for any method.
const defaultRetryOn = "connect-failure,refused-stream,reset-before-request"

// maxRetries bounds retries: more multiply load on an upstream in trouble.
const maxRetries = 10

func parseRoute(rf *fields) (Route, ref) {
	p := rf.p
	var r Route
	if mv := rf.value("match"); mv == nil {
		p.add(rf.line("match"), "%s: missing match (prefix or path)", rf.path)
	} else {
		m := p.mapping(mv, rf.sub("match"))
		r.Prefix, r.Path = parsePathMatch(m, "path", mv)
		r.Headers = parseHeaderMatches(m)
		m.finish()
	}
	cluster, cn := rf.str("cluster")
	var cref ref
	switch {
	case cn == nil && !rf.missing("cluster"):
		// not a string; already reported
	case cn == nil || cluster == "":
		p.add(orNode(cn, rf.line("cluster")), "%s: missing cluster", rf.path)
	default:
		cref = ref{value: cluster, path: rf.sub("cluster"), line: cn.Line}
	}
	r.Cluster = cluster
	r.Timeout = parseTimeout(rf)
	r.Retries = parseRetries(rf)
	rf.finish()
	return r, cref
}

// parsePathMatch reads exactly one of prefix and exactKey (path in a route,
// exact in a plugin's paths), each starting with '/'.
func parsePathMatch(m *fields, exactKey string, at *yaml.Node) (prefix, exact string) {
	prefix, pn := m.str("prefix")
	exact, en := m.str(exactKey)
	switch {
	case pn != nil && en != nil:
		m.p.add(en, "%s: set only one of prefix and %s", m.path, exactKey)
	case pn == nil && en == nil:
		m.p.add(at, "%s: set prefix or %s", m.path, exactKey)
	}
	for _, v := range []struct {
		s string
		n *yaml.Node
	}{{prefix, pn}, {exact, en}} {
		if v.n != nil && (v.s == "" || v.s[0] != '/') {
			m.p.add(v.n, "%s: %q must start with '/'", m.path, v.s)
		}
	}
	return prefix, exact
}

// parseHeaderMatches reads match.headers: each names a header and sets
// exactly one of exact, prefix and present.
func parseHeaderMatches(m *fields) []HeaderMatch {
	items, _ := m.seq("headers")
	var out []HeaderMatch
	for i, it := range items {
		hf := m.p.mapping(it, m.sub("headers["+strconv.Itoa(i)+"]"))
		if h, ok := parseHeaderMatch(hf, it); ok {
			out = append(out, h)
		}
		hf.finish()
	}
	return out
}

func parseHeaderMatch(hf *fields, at *yaml.Node) (HeaderMatch, bool) {
	name, nn := hf.str("name")
	exact, en := hf.str("exact")
	prefix, pn := hf.str("prefix")
	present, prn := hf.boolean("present")
	set := 0
	for _, n := range []*yaml.Node{en, pn, prn} {
		if n != nil {
			set++
		}
	}
	switch {
	case nn == nil || name == "":
		hf.p.add(orNode(nn, hf.line("name")), "%s: missing", hf.sub("name"))
	case !headerNameRE.MatchString(name):
		hf.p.add(nn, "%s: %q is not a header name", hf.sub("name"), name)
	case set != 1:
		hf.p.add(at, "%s: set exactly one of exact, prefix and present", hf.path)
	case prn != nil && !present:
		hf.p.add(prn, "%s: only present: true is supported (match absence with another route's order)", hf.sub("present"))
	case pn != nil && prefix == "":
		hf.p.add(pn, "%s: must not be empty (use present: true)", hf.sub("prefix"))
	default:
		return HeaderMatch{Name: strings.ToLower(name), Exact: exact, Prefix: prefix, Present: present}, true
	}
	return HeaderMatch{}, false
}

// boolean reads a true/false field.
func (f *fields) boolean(key string) (bool, *yaml.Node) {
	v := f.value(key)
	if v == nil {
		return false, nil
	}
	var b bool
	if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" || v.Decode(&b) != nil {
		f.p.add(v, "%s: must be true or false", f.sub(key))
		return false, nil
	}
	return b, v
}

// parseTimeout reads a route's timeout, a Go duration such as 5s or 1m30s.
func parseTimeout(rf *fields) time.Duration {
	s, n := rf.str("timeout")
	if n == nil {
		return 0
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		rf.p.add(n, "%s: %q is not a duration (write e.g. 500ms, 5s or 1m30s)", rf.sub("timeout"), s)
	case d <= 0:
		rf.p.add(n, "%s: %q must be positive", rf.sub("timeout"), s)
	default:
		return d
	}
	return 0
}

// parseRetries reads retries: {attempts, on}.
func parseRetries(rf *fields) *Retries {
	v := rf.value("retries")
	if v == nil {
		return nil
	}
	f := rf.p.mapping(v, rf.sub("retries"))
	defer f.finish()
	r := &Retries{Attempts: 1, On: defaultRetryOn}
	if n, _, ok := f.integer("attempts", 1, maxRetries); ok {
		r.Attempts = uint32(n)
	}
	on, n := f.str("on")
	if n == nil {
		return r
	}
	var conds []string
	for c := range strings.SplitSeq(on, ",") {
		c = strings.TrimSpace(c)
		if !slices.Contains(retryConditions, c) {
			f.p.add(n, "%s: unknown retry condition %q (want a comma-separated list of %s)",
				f.sub("on"), c, strings.Join(retryConditions, ", "))
			return r
		}
		if !slices.Contains(conds, c) {
			conds = append(conds, c)
		}
	}
	r.On = strings.Join(conds, ",")
	return r
}
