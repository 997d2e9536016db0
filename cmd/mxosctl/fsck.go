package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/mxos-linux/mxos-update/internal/i18n"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/sign"
)

func newFsckCmd() *cobra.Command {
	var data, keys string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "fsck --data DIR [--keys KEYDIR]",
		Short: "Check every ref, commit and object of the repository",
		Long: `Fsck checks that every ref names a complete commit, that every object's bytes
match its checksum and format, and, with --keys, that every ref's commit is
signed by a key in KEYDIR (public keys are enough).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			repo, err := ostree.Open(repoDir(data))
			if err != nil {
				return err
			}
			var opts ostree.FsckOptions
			if keys != "" {
				v, err := sign.LoadVerifiers(keys)
				if err != nil {
					return err
				}
				opts.VerifyCommit = release.CommitVerifier(v)
			}
			bar := newProgress(os.Stderr, quiet)
			opts.Progress = func(done, total int) { bar.count(done, total) }
			rep, err := repo.Fsck(cmd.Context(), opts)
			bar.done()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, e := range rep.Errors {
				fmt.Fprintln(out, "error:", e)
			}
			say(out, "Checked %d refs, %d commits, %d objects: %d problems.", rep.Refs, rep.Commits, rep.Objects, len(rep.Errors))
			if len(rep.Errors) > 0 {
				return i18n.Errorf("repository has %d problems", len(rep.Errors))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&data, "data", envOr("MXOS_DATA", "./mxos-data"), "data directory (env MXOS_DATA)")
	cmd.Flags().StringVar(&keys, "keys", "", "directory with trusted public keys: also check commit signatures")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress output")
	return cmd
}
