package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/wasmxds/wasmxds/internal/fetcher"
	"github.com/wasmxds/wasmxds/internal/modref"
)

// defaultCacheDir is where modules are cached unless --cache-dir says
// otherwise: the user cache directory, or the temp directory when there is
// no home to put it in.
func defaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "wasmxds")
	}
	return filepath.Join(os.TempDir(), "wasmxds-cache")
}

type pullFlags struct {
	cacheDir     string
	sha256       string
	insecure     []string
	dockerConfig string
	pullSecret   string
	always       bool
	verbose      bool
}

func newPullCmd() *cobra.Command {
	var fl pullFlags
	cmd := &cobra.Command{
		Use:   "pull URL",
		Short: "Fetch and verify a Wasm module into the cache and print its sha256",
		Long: `Resolve URL (oci://host/repo:tag, host/repo@sha256:..., repo:tag on Docker Hub,
http(s)://..., file:///path, file:relative/path) to a verified proxy-wasm
module, store it in the cache and print "sha256:<hex> <bytes> <url>", where
<url> is the canonical spelling that specs, status and logs use (e.g.
add-header:v1 is oci://docker.io/library/add-header:v1). A reference already
in the cache is not fetched again unless --always is given.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPull(cmd, args[0], fl)
		},
	}
	f := cmd.Flags()
	f.StringVar(&fl.cacheDir, "cache-dir", defaultCacheDir(), "module cache directory")
	f.StringVar(&fl.sha256, "sha256", "", "expected OCI manifest digest or module sha256 (64 hex digits, sha256: optional)")
	f.StringSliceVar(&fl.insecure, "insecure-registry", nil, "registry host[:port] to reach over plain HTTP (repeatable; localhost, 127.0.0.1 and ::1 always are)")
	f.StringVar(&fl.dockerConfig, "docker-config", "", "docker config.json file with registry credentials (default $DOCKER_CONFIG/config.json, else ~/.docker/config.json)")
	f.StringVar(&fl.pullSecret, "pull-secret", "", "docker config.json file, or a credentials entry name in the docker config")
	f.BoolVar(&fl.always, "always", false, "re-resolve the reference even if it is cached")
	f.BoolVarP(&fl.verbose, "verbose", "v", false, "log progress to stderr")
	return cmd
}

func runPull(cmd *cobra.Command, raw string, fl pullFlags) error {
	cwd, err := os.Getwd()
	if err != nil {
		return err
	}
	ref, err := modref.Parse(raw, cwd) // file:rel/path is relative to the working directory
	if err != nil {
		return err
	}
	url := ref.String()
	level := slog.LevelWarn
	if fl.verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
	f, err := fetcher.New(fetcher.Options{
		CacheDir:           fl.cacheDir,
		InsecureRegistries: fl.insecure,
		DockerConfig:       fl.dockerConfig,
		Logger:             logger,
	})
	if err != nil {
		return err
	}
	logger.Info("pulling", "component", "pull", "url", url)
	m, err := f.Resolve(commandContext(cmd), fetcher.Request{URL: url, SHA256: fl.sha256, Always: fl.always, PullSecret: fl.pullSecret})
	if err != nil && !errors.Is(err, fetcher.ErrStale) {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "sha256:%s %d %s\n", m.SHA256, m.Size, url)
	return err // a stale module was printed, but the refresh still failed
}

// commandContext returns the command's context, or Background when run
// outside Execute (as in tests).
func commandContext(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}
