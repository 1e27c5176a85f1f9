package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/wasmxds/wasmxds/internal/fetcher"
)

func newPushCmd() *cobra.Command {
	var insecure []string
	var dockerConfig, signKey string
	cmd := &cobra.Command{
		Use:   "push FILE.wasm REF",
		Short: "Publish a Wasm module as an OCI artifact and print its manifest digest",
		Long: `Verify FILE.wasm as a proxy-wasm module and push it to REF (host/repo:tag,
oci:// optional) as a Wasm OCI artifact: config ` + fetcher.MediaTypeWasmConfig + `,
one layer ` + fetcher.MediaTypeWasmLayer + `. Prints "sha256:<manifest digest>".
Registries on localhost, 127.0.0.1 and ::1 are reached over plain HTTP. With --sign-key
(a private key from cosign generate-key-pair; its password in $COSIGN_PASSWORD)
the manifest is also signed as cosign sign --key does, without a transparency
log entry.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			module, err := os.ReadFile(args[0])
			if err != nil {
				return fmt.Errorf("push: %w", err)
			}
			key, err := loadSignKey(signKey)
			if err != nil {
				return err
			}
			digest, err := fetcher.Push(commandContext(cmd), module, args[1], fetcher.PushOptions{
				InsecureRegistries: insecure,
				DockerConfig:       dockerConfig,
				Title:              filepath.Base(args[0]),
				Logger:             slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil)),
				SignKey:            key,
			})
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), digest)
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&insecure, "insecure-registry", nil, "registry host[:port] to reach over plain HTTP (repeatable; localhost, 127.0.0.1 and ::1 always are)")
	cmd.Flags().StringVar(&dockerConfig, "docker-config", "", "docker config.json file with registry credentials (default $DOCKER_CONFIG/config.json, else ~/.docker/config.json)")
	cmd.Flags().StringVar(&signKey, "sign-key", "", "cosign private key file to sign the manifest with (password in $COSIGN_PASSWORD)")
	return cmd
}

// loadSignKey reads --sign-key; nil when it is not given.
func loadSignKey(path string) (*fetcher.SignKey, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--sign-key: %w", err)
	}
	k, err := fetcher.LoadSignKey(b, []byte(os.Getenv("COSIGN_PASSWORD")))
	if err != nil {
		return nil, fmt.Errorf("--sign-key %s: %w", path, err)
	}
	return k, nil
}
