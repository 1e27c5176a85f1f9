package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "wasmxds",
		Short:         "A standalone xDS control plane that delivers Wasm filters to Envoy",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newServeCmd(),
		newValidateCmd(),
		newConvertCmd(),
		newBootstrapCmd(),
		newPushCmd(),
		newPullCmd(),
		newVerifyCmd(),
		newStatusCmd(),
	)
	return root
}

// exitError ends the process with a code after the command has already
// printed what the user needs to see (e.g. validate's file:line list).
type exitError struct{ code int }

func (e exitError) Error() string { return "exit" }

func asExit(err error, target *exitError) bool { return errors.As(err, target) }
