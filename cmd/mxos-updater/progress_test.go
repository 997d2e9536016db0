package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// Off a terminal (journald, pipes, buffers) there is no progress line at
// all: only the agent's plain messages reach the log.
func TestProgressOffTerminal(t *testing.T) {
	if p := newProgress(&bytes.Buffer{}); p != nil {
		t.Fatal("progress on a buffer")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if p := newProgress(w); p != nil {
		t.Fatal("progress on a pipe")
	}
}

// On a terminal the line is rewritten in place, at most every 200 ms,
// and cleared when the download is complete.
func TestProgressLine(t *testing.T) {
	var buf bytes.Buffer
	p := &progress{w: &buf}
	p.count(1, 10)
	p.count(2, 10) // within 200 ms of the first: skipped
	p.count(10, 10)
	out := buf.String()
	if !strings.Contains(out, "1 of 10 objects") || strings.Contains(out, "2 of 10") || !strings.Contains(out, "10 of 10 objects") {
		t.Fatalf("progress output %q", out)
	}
	if !strings.HasSuffix(out, "\r\033[K") {
		t.Fatalf("the line is not cleared at the end: %q", out)
	}
}
