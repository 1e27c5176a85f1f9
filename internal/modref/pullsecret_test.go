package modref

import "testing"

func TestPullSecretRegistry(t *testing.T) {
	for _, c := range []struct {
		secret, host string
		entry        bool
	}{
		{"registry.example:5000", "registry.example:5000", true},
		{"Registry.Example", "registry.example", true},
		{"https://registry.example/v1/", "registry.example", true},
		{"https://index.docker.io/v1/", "docker.io", true},
		{"registry-1.docker.io", "docker.io", true},
		{"", "", false},
		{"/etc/docker/config.json", "", false},
		{"secrets/pull", "", false},
		{"pull.json", "", false},
	} {
		host, entry := PullSecretRegistry(c.secret)
		if host != c.host || entry != c.entry {
			t.Errorf("PullSecretRegistry(%q) = %q, %v; want %q, %v", c.secret, host, entry, c.host, c.entry)
		}
	}
	if !SameRegistry("docker.io", "https://index.docker.io/v1/") || SameRegistry("registry.example", "registry.example:5000") {
		t.Error("SameRegistry: Docker Hub's names must match each other, and a port makes another registry")
	}
}
