package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/wasmxds/wasmxds/fetcher"
)

func newPushCmd() *cobra.Command {
	var insecure []string
	var dockerConfig string
	cmd := &cobra.Command{
		Use:   "push FILE.wasm REF",
		Short: "Publish a Wasm module as an OCI artifact and print its manifest digest",
		Long: `Verify FILE.wasm as a proxy-wasm module and push it to REF (host/repo:tag,
oci:// optional) as a Wasm OCI artifact: config ` + fetcher.MediaTypeWasmConfig + `,
one layer ` + fetcher.MediaTypeWasmLayer + `. Prints "sha256:<manifest digest>".
Registries on localhost/127.0.0.1 are reached over plain HTTP.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			module, err := os.ReadFile(args[0])
			if err != nil {
				return fmt.Errorf("push: %w", err)
			}
			digest, err := fetcher.Push(commandContext(cmd), module, args[1], fetcher.PushOptions{
				InsecureRegistries: insecure,
				DockerConfig:       dockerConfig,
				Title:              filepath.Base(args[0]),
				Logger:             slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil)),
			})
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), digest)
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&insecure, "insecure-registry", nil, "registry host[:port] to reach over plain HTTP (repeatable)")
	cmd.Flags().StringVar(&dockerConfig, "docker-config", "", "docker config.json with registry credentials (default $DOCKER_CONFIG or ~/.docker)")
	return cmd
}
