package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/wasmxds/wasmxds/internal/fetcher"
	"github.com/wasmxds/wasmxds/internal/modref"
	"github.com/wasmxds/wasmxds/internal/sigkey"
)

type verifyFlags struct {
	key          string
	insecure     []string
	dockerConfig string
	pullSecret   string
}

func newVerifyCmd() *cobra.Command {
	var fl verifyFlags
	cmd := &cobra.Command{
		Use:   "verify URL --key cosign.pub",
		Short: "Check that an OCI module carries a cosign signature made with a key",
		Long: `Resolve URL (an OCI reference) to its manifest digest and check, against the
registry alone (no transparency log), that the digest carries a cosign
signature made with the public key in --key: the check serve makes for a
WasmPlugin with verificationKey. Prints "verified URL manifest DIGEST key
FINGERPRINT" and exits 0, or "refused URL: REASON" (unsigned, bad signature,
key mismatch) and exits 1. Nothing is pulled or cached.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runVerify(cmd, args[0], fl)
		},
	}
	f := cmd.Flags()
	f.StringVar(&fl.key, "key", "", "PEM public key file (cosign.pub); required")
	f.StringSliceVar(&fl.insecure, "insecure-registry", nil, "registry host[:port] to reach over plain HTTP (repeatable; localhost, 127.0.0.1 and ::1 always are)")
	f.StringVar(&fl.dockerConfig, "docker-config", "", "docker config.json file with registry credentials (default $DOCKER_CONFIG/config.json, else ~/.docker/config.json)")
	f.StringVar(&fl.pullSecret, "pull-secret", "", "docker config.json file, or a credentials entry name in the docker config")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

func runVerify(cmd *cobra.Command, raw string, fl verifyFlags) error {
	key, err := os.ReadFile(fl.key)
	if err != nil {
		return fmt.Errorf("--key: %w", err)
	}
	ref, err := modref.Parse(raw, "")
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "wasmxds-verify-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	f, err := fetcher.New(fetcher.Options{CacheDir: dir, InsecureRegistries: fl.insecure, DockerConfig: fl.dockerConfig})
	if err != nil {
		return err
	}
	defer f.Close()
	req := fetcher.Request{URL: ref.String(), VerificationKey: string(key), PullSecret: fl.pullSecret}
	digest, err := f.VerifySignature(commandContext(cmd), req)
	switch {
	case errors.Is(err, fetcher.ErrSignature):
		fmt.Fprintf(cmd.OutOrStdout(), "refused %s\n", err)
		return exitError{code: 1}
	case err != nil:
		return err
	}
	k, err := sigkey.Parse(string(key)) // VerifySignature accepted it
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "verified %s manifest %s key %s\n", ref.String(), digest, k.Fingerprint)
	return nil
}
