package main

// This file holds what the commands that talk to mxos-server share: the
// --server and --token flags, the client, how server errors are printed,
// and table and JSON output.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/client"
	"github.com/mxos-linux/mxos-update/internal/i18n"
)

const defaultServer = "http://127.0.0.1:8080"

// remote holds the global flags of the server commands.
type remote struct {
	server   string
	token    string
	caFile   string
	hasToken bool // whether a token was sent, from either source
}

// addServerCmds adds --server, --token and the commands that use them.
// They are persistent flags on root so they can go before or after the
// command name; the local commands (keys, publish, fsck) ignore them.
func addServerCmds(root *cobra.Command) *remote {
	r := &remote{}
	pf := root.PersistentFlags()
	pf.StringVar(&r.server, "server", envOr("MXOS_SERVER", defaultServer), "mxos-server address (env MXOS_SERVER)")
	// The default is not the environment's value: help output would show
	// the token. It is read when a command runs instead.
	pf.StringVar(&r.caFile, "ca-file", envOr("MXOS_CA_FILE", ""), "PEM file of the CA that signed the server's TLS certificate, added to the system's (env MXOS_CA_FILE)")
	pf.StringVar(&r.token, "token", "", "API token (env MXOS_TOKEN; prefer the variable, command lines are visible to other users)")
	root.AddCommand(
		newChannelsCmd(r),
		newRolloutCmd(r),
		newPinCmd(r), newUnpinCmd(r), newPinsCmd(r),
		newDevicesCmd(r), newGroupCmd(r),
		newFleetLockCmd(r), // fleetlock.go
		newReleaseCmd(r),   // release.go
		newAuditCmd(r),
		newTokenCmd(r),
		newBundleCmd(r), // bundle.go
	)
	return r
}

// client builds an API client from the flags and the environment.
func (r *remote) client(cmd *cobra.Command) (*client.Client, error) {
	token := r.token
	if !cmd.Flags().Changed("token") {
		token = os.Getenv("MXOS_TOKEN")
	}
	token = strings.TrimSpace(token)
	r.hasToken = token != ""
	tlsCfg, err := client.TLSConfig(r.caFile)
	if err != nil {
		return nil, i18n.Errorf("--ca-file or MXOS_CA_FILE: %w", err)
	}
	c, err := client.New(r.server, token, client.WithUserAgent("mxosctl"), client.WithTLSConfig(tlsCfg))
	if err != nil {
		return nil, i18n.Errorf("check --server or MXOS_SERVER, --token or MXOS_TOKEN: %w", err)
	}
	return c, nil
}

// serverError is an API error as people read it: the message, then the
// code in parentheses. errors.Is and errors.As still see the *api.Error.
type serverError struct{ e *api.Error }

func (s *serverError) Error() string { return fmt.Sprintf("%s (%s)", s.e.Message, s.e.Code) }
func (s *serverError) Unwrap() error { return s.e }

// explain turns a client error into what mxosctl prints, with a hint for
// the usual mistakes.
func (r *remote) explain(err error) error {
	var ae *api.Error
	if errors.As(err, &ae) {
		se := &serverError{e: ae}
		if ae.Code == api.CodeUnauthorized && !r.hasToken {
			return i18n.Errorf("%w; set MXOS_TOKEN or use --token", se)
		}
		return se
	}
	var ne *net.OpError
	if errors.As(err, &ne) && ne.Op == "dial" {
		return i18n.Errorf("%w (is mxos-server running at %s? see --server)", err, r.server)
	}
	return err
}

// table writes aligned columns. Cells are cleaned: device ids and audit
// details come from the network and must not move the cursor or break
// the columns.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		cells[i] = cell(c)
	}
	fmt.Fprintln(t.tw, strings.TrimRight(strings.Join(cells, "\t"), "\t "))
}

func (t *table) flush() { t.tw.Flush() }

// cell is s with control characters removed, or "-" when empty.
func cell(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return ' '
		}
		if !unicode.IsPrint(r) {
			return -1
		}
		return r
	}, s)
	if s == "" {
		return "-"
	}
	return s
}

// printJSON writes v indented, for scripts.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return i18n.Errorf("writing JSON: %w", err)
	}
	return nil
}

// percent prints a fraction in [0, 1] as a percentage with at most two
// decimals, the precision ramps have ("0.5%", "10%").
func percent(f float64) string {
	return strconv.FormatFloat(float64(int64(f*10000+0.5))/100, 'f', -1, 64) + "%"
}

// when prints a time in UTC to the minute, or "-" when zero.
func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04Z")
}

// plural is "1 device", "2 devices".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + msg.T(one)
	}
	return strconv.Itoa(n) + " " + msg.T(many)
}
