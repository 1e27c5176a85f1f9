package modref

import (
	"os"
	"strings"
)

// PullSecretRegistry returns the registry an imagePullSecret names when it
// is a docker config entry (server address) rather than a config.json file:
// its host[:port] as RegistryHost spells it, and true. A value containing a
// path separator (other than a URL's) or ending in ".json" is a file, and
// "" names nothing; both return false. The credentials of an entry belong
// to its registry only: a module URL on another registry must not use it.
func PullSecretRegistry(secret string) (string, bool) {
	isURL := strings.HasPrefix(secret, "https://") || strings.HasPrefix(secret, "http://")
	isFile := strings.ContainsRune(secret, os.PathSeparator) || strings.ContainsRune(secret, '/') ||
		strings.HasSuffix(secret, ".json")
	if secret == "" || (isFile && !isURL) {
		return "", false
	}
	return RegistryHost(secret), true
}

// RegistryHost reduces a docker config server address (host[:port],
// possibly with a scheme and a path, as in "https://index.docker.io/v1/")
// to its lowercase host[:port]. Docker Hub's names all become docker.io.
func RegistryHost(addr string) string {
	addr = strings.TrimPrefix(strings.TrimPrefix(addr, "https://"), "http://")
	addr, _, _ = strings.Cut(addr, "/")
	addr = strings.ToLower(addr)
	switch addr {
	case "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com":
		return DockerHub
	}
	return addr
}

// SameRegistry reports whether two server addresses name one registry.
func SameRegistry(a, b string) bool { return RegistryHost(a) == RegistryHost(b) }
