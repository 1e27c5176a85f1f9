package modref

import (
	"net"
	"strings"

	"oras.land/oras-go/v2/registry"
)

// parseOCI parses rest, the reference after any oci:// of raw.
func parseOCI(raw, rest string) (Ref, error) {
	if rest == "" {
		return Ref{}, invalid(raw, "no registry or repository")
	}
	r := Ref{Kind: KindOCI}
	name, digest, hasDigest := strings.Cut(rest, "@")
	if hasDigest {
		hex, err := parseDigest(digest)
		if err != nil {
			return Ref{}, invalid(raw, "what follows @ must be sha256: and 64 hex digits")
		}
		r.Digest = hex
	}
	host, path := splitHost(name)
	repo, tag, hasTag := strings.Cut(path, ":")
	if host == DockerHub && !strings.Contains(repo, "/") {
		repo = "library/" + repo
	}
	ref := registry.Reference{Registry: host, Repository: repo, Reference: tag}
	switch {
	case ref.ValidateRegistry() != nil:
		return Ref{}, invalid(raw, "registry %q is not a host or host:port", host)
	case ref.ValidateRepository() != nil:
		return Ref{}, invalid(raw, "repository %q must be lowercase letters and digits, "+
			"separated by '/', '.', '_', '__' or dashes", repo)
	case hasTag && ref.ValidateReferenceAsTag() != nil:
		return Ref{}, invalid(raw, "tag %q must be 1 to 128 letters, digits, '_', '.' or '-', "+
			"not starting with '.' or '-'", tag)
	}
	r.Registry, r.Repository, r.Tag = host, repo, tag
	if !hasTag && !hasDigest {
		r.Tag = "latest"
	}
	return r, nil
}

// parseDigest parses the digest after "@": sha256: (any case) and 64 hex
// digits (any case).
func parseDigest(s string) (string, error) {
	if len(s) < len(sha256Prefix) || !strings.EqualFold(s[:len(sha256Prefix)], sha256Prefix) {
		return "", ErrInvalid
	}
	return ParseSHA256(s)
}

// splitHost applies Docker's shorthand: the first path element is the
// registry only if it looks like a host; otherwise the whole name is a
// Docker Hub repository.
func splitHost(name string) (host, path string) {
	first, rest, ok := strings.Cut(name, "/")
	if !ok || (!strings.ContainsAny(first, ".:") && first != "localhost") {
		return DockerHub, name
	}
	host = strings.ToLower(first)
	if host == "index.docker.io" {
		host = DockerHub
	}
	return host, rest
}

// LoopbackRegistry reports whether a registry host[:port] is on this
// machine (localhost, 127.0.0.1, ::1): such a registry is always reached
// over plain HTTP, with no --insecure-registry needed.
func LoopbackRegistry(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	switch strings.Trim(host, "[]") {
	case "localhost", "127.0.0.1", "::1":
		return true
	}
	return false
}
