package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newBootstrapCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "bootstrap",
		Short: "not implemented yet",
		RunE:  func(*cobra.Command, []string) error { return errors.New("bootstrap: not implemented") },
	}
}
