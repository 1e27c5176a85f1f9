package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newPullCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "pull",
		Short: "not implemented yet",
		RunE:  func(*cobra.Command, []string) error { return errors.New("pull: not implemented") },
	}
}
