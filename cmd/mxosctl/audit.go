package main

import (
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/i18n"
)

func newAuditCmd(r *remote) *cobra.Command {
	var after int64
	var limit int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "audit [--after N] [--limit N] [--json]",
		Short: "Print the audit log and whether its hash chain verifies",
		Long: `Audit prints entries of the append-only audit log (every publish, promotion,
rollout step, pin and token change) and whether the server verified the
whole hash chain. It also checks that the entries it printed link to each
other. It exits non-zero when either check fails, so it can run from cron.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if after < 0 || limit < 0 {
				return userError("--after and --limit must be 0 or more")
			}
			c, err := r.client(cmd)
			if err != nil {
				return err
			}
			list, err := c.Audit(cmd.Context(), after, limit)
			if err != nil {
				return r.explain(err)
			}
			linkErr := checkLinks(list.Entries)
			out := cmd.OutOrStdout()
			if asJSON {
				list.Entries = nonNil(list.Entries)
				if err := printJSON(out, list); err != nil {
					return err
				}
			} else {
				printAudit(out, list)
				if linkErr != nil {
					say(out, "The entries above do NOT link up: %v.", linkErr)
				}
			}
			if !list.Verified {
				return i18n.Errorf("the audit log does not verify: %s", cell(list.VerifyError))
			}
			if linkErr != nil {
				return i18n.Errorf("the audit entries do not link up: %w", linkErr)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.Int64Var(&after, "after", 0, "start after this entry number")
	f.IntVar(&limit, "limit", 0, "at most this many entries (default: the server's)")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printAudit(out io.Writer, list api.AuditList) {
	if len(list.Entries) == 0 {
		say(out, "No entries.")
	} else {
		t := newTable(out, "SEQ", "TIME", "ACTOR", "ACTION", "SUBJECT", "DETAIL")
		for _, e := range list.Entries {
			t.row(strconv.FormatInt(e.Seq, 10), when(e.At), e.Actor, e.Action, e.Subject, e.Detail)
		}
		t.flush()
	}
	if list.Verified {
		say(out, "The audit chain verified: %s, head hash %s.", plural(int(list.HeadSeq), "entry", "entries"), cell(list.HeadHash))
	} else {
		say(out, "The audit chain did NOT verify: %s.", cell(list.VerifyError))
	}
}

// checkLinks checks that a page of entries is a piece of one chain:
// consecutive numbers, each PrevHash the Hash before it. It cannot
// recompute the hashes (the server holds the encoding); it catches a page
// with entries dropped or spliced in.
func checkLinks(entries []api.AuditEntry) error {
	for i := 1; i < len(entries); i++ {
		prev, e := entries[i-1], entries[i]
		if e.Seq != prev.Seq+1 {
			return i18n.Errorf("entry %d follows entry %d", e.Seq, prev.Seq)
		}
		if e.PrevHash != prev.Hash {
			return i18n.Errorf("entry %d does not name the hash of entry %d", e.Seq, prev.Seq)
		}
	}
	return nil
}
