// Package testenv finds the real tools that tests and benchmarks run, the
// same way everywhere: an environment variable, then PATH, then the copy
// `make deps` installs under .tools/.
package testenv

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// ErrNoEnvoy says Envoy could not be found.
var ErrNoEnvoy = errors.New("envoy not found: set ENVOY_BIN, put envoy on PATH, or run `make deps`")

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Envoy finds the Envoy binary: $ENVOY_BIN, then PATH, then
// .tools/envoy-venv/bin/envoy. Callers fail, never skip, when it is missing:
// a test that proves Envoy accepts something must not pass without Envoy.
func Envoy() (string, error) {
	if p := os.Getenv("ENVOY_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", errors.Join(ErrNoEnvoy, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("envoy"); err == nil {
		return p, nil
	}
	p := filepath.Join(RepoRoot(), ".tools", "envoy-venv", "bin", "envoy")
	if _, err := os.Stat(p); err != nil {
		return "", ErrNoEnvoy
	}
	return p, nil
}

// Tool finds a command-line tool `make deps` installs into .tools/bin
// (oras, cosign, staticcheck): PATH first, then .tools/bin. Callers fail,
// never skip, when it is missing.
func Tool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	p := filepath.Join(RepoRoot(), ".tools", "bin", name)
	if _, err := os.Stat(p); err != nil {
		return "", errors.New(name + " not found on PATH or in .tools/bin: run `make deps`")
	}
	return p, nil
}
