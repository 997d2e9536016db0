package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/buildinfo"
)

func TestVersionFlag(t *testing.T) {
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--version"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if want := "mxos-server version " + buildinfo.Version(); !strings.Contains(out.String(), want) {
		t.Fatalf("--version printed %q, want %q", out.String(), want)
	}
}
