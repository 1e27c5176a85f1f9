package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newPushCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "push",
		Short: "not implemented yet",
		RunE:  func(*cobra.Command, []string) error { return errors.New("push: not implemented") },
	}
}
