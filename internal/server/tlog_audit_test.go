package server

import (
	"context"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/tessera/client"

	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/sign"
	"github.com/mxos-linux/mxos-update/internal/tlog"
	"github.com/mxos-linux/mxos-update/internal/tlogstore"
)

// TestAuditMirroredToLog: rollout changes, group pins and root rotations
// reach the public log once each; device pins, tokens and who did what
// never do.
func TestAuditMirroredToLog(t *testing.T) {
	ctx := context.Background()
	data := newDataDir(t)
	store, set := openAPI(t, data)
	l, err := tlogstore.Open(ctx, tlogstore.Options{Dir: filepath.Join(data, "log"), KeyFile: filepath.Join(data, "log-key"),
		CheckpointInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close(ctx) })
	s, err := New(Config{DataDir: data, Store: store, Channels: set, TransparencyLog: l})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	at := time.Unix(1_800_000_000, 0)
	audit := func(es ...db.Entry) {
		t.Helper()
		if err := store.Tx(ctx, func(tx *db.Tx) error {
			for _, e := range es {
				e.At = at
				if _, err := tx.AppendAudit(ctx, e); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	audit(
		db.Entry{Actor: "token:ana", Action: "rollout.start", Subject: "stable/x86_64/10.2", Detail: `{"rollout":"r1","ramp":"5%,100%@24h"}`},
		db.Entry{Actor: "token:ana", Action: "token.create", Subject: "ci", Detail: `{"role":"release"}`},
		db.Entry{Actor: "token:ana", Action: "pin.set", Subject: "device/lab-7", Detail: `{"channel":"stable","version":"10.1"}`},
		db.Entry{Actor: "token:ana", Action: "pin.set", Subject: "group/aula-3", Detail: `{"channel":"edu","version":"10.1"}`},
		db.Entry{Actor: "server:auto-halt", Action: "rollout.halt", Subject: "stable/x86_64/10.2", Detail: `{"rollout":"r1"}`},
	)
	if err := s.mirrorAudit(ctx); err != nil {
		t.Fatal(err)
	}
	audit(db.Entry{Actor: "token:ana", Action: "pin.delete", Subject: "group/aula-3"},
		db.Entry{Actor: "token:ana", Action: "metadata.root", Subject: "metadata", Detail: `{"root":2}`})
	if err := s.mirrorAudit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.mirrorAudit(ctx); err != nil { // nothing new: nothing appended
		t.Fatal(err)
	}
	raw, err := l.Reader().ReadCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := tlog.NewVerifier(l.VerifierKey())
	cp, err := tlog.OpenCheckpoint(raw, v)
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := client.GetEntryBundle(ctx, l.Reader().ReadEntryBundle, 0, cp.Size)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range bundle.Entries {
		e, err := tlog.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e.Describe())
		if strings.Contains(string(b), "ana") || strings.Contains(string(b), "lab-7") || strings.Contains(string(b), "auto-halt") {
			t.Errorf("private detail in the public log: %q", b)
		}
	}
	want := []string{
		"2027-01-15 08:00:00Z  started the rollout of stable 10.2 for x86_64 (ramp 5%,100%@24h)",
		"2027-01-15 08:00:00Z  pinned group aula-3 to edu 10.1",
		"2027-01-15 08:00:00Z  halted the rollout of stable 10.2 for x86_64",
		"2027-01-15 08:00:00Z  unpinned group aula-3",
		"2027-01-15 08:00:00Z  rotated the channel metadata keys",
	}
	sort.Strings(got) // in-batch order is tessera's choice
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("log entries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// A database restored from an older backup than the mark: its next
	// event still reaches the log.
	if err := tlogstore.SaveSeq(filepath.Join(data, "log-audit-seq"), 1000); err != nil {
		t.Fatal(err)
	}
	if err := s.clampAuditMark(ctx); err != nil { // as Serve does first
		t.Fatal(err)
	}
	audit(db.Entry{Actor: "token:ana", Action: "rollout.pause", Subject: "stable/x86_64/10.2", Detail: `{"rollout":"r1"}`})
	if err := s.mirrorAudit(ctx); err != nil {
		t.Fatal(err)
	}
	raw, err = l.Reader().ReadCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cp, err = tlog.OpenCheckpoint(raw, v); err != nil || cp.Size != uint64(len(want))+1 {
		t.Fatalf("after a mark past the audit log's end: log size %d (%v), want %d: the new event was not mirrored", cp.Size, err, len(want)+1)
	}
}

// TestReleaseKeysLogged: the release key set is logged at the first
// start, not again while it stays, and again when it changes.
func TestReleaseKeysLogged(t *testing.T) {
	ctx := context.Background()
	data := newDataDir(t)
	l, err := tlogstore.Open(ctx, tlogstore.Options{Dir: filepath.Join(data, "log"), KeyFile: filepath.Join(data, "log-key"),
		CheckpointInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close(ctx) })
	size := func() uint64 {
		raw, err := l.Reader().ReadCheckpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		v, _ := tlog.NewVerifier(l.VerifierKey())
		cp, err := tlog.OpenCheckpoint(raw, v)
		if err != nil {
			t.Fatal(err)
		}
		return cp.Size
	}
	for i, want := range []uint64{1, 1, 2} {
		dir := genKeys(t).dir
		if i == 1 {
			dir = filepath.Join(data, "keys0")
		}
		if i == 0 {
			dir = filepath.Join(data, "keys0")
			if err := sign.GenerateKeys(dir, sign.GenerateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		trusted, err := sign.LoadVerifiers(dir)
		if err != nil {
			t.Fatal(err)
		}
		s := &Server{cfg: Config{DataDir: data, TransparencyLog: l, TrustedKeys: trusted}}
		if err := s.logReleaseKeys(ctx); err != nil {
			t.Fatal(err)
		}
		if got := size(); got != want {
			t.Fatalf("start %d: log size %d, want %d", i, got, want)
		}
	}
}
