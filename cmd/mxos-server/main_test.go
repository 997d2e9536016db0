package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRootCommandRunsServer(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	cmd := newRootCmd()
	pr, pw := io.Pipe()
	cmd.SetOut(pw)
	cmd.SetArgs([]string{"--data", data, "--listen", "127.0.0.1:0", "--log-level", "warn"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		err := cmd.ExecuteContext(ctx)
		pw.Close()
		done <- err
	}()

	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the startup line: %v (command: %v)", err, <-done)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	i := strings.Index(line, "http://")
	if i < 0 || !strings.HasSuffix(strings.TrimSpace(line), "/repo") {
		t.Fatalf("startup line has no repository URL: %q", line)
	}
	url := strings.TrimSpace(line[i:])
	if fi, err := os.Stat(filepath.Join(data, "repo")); err != nil || !fi.IsDir() {
		t.Fatalf("data/repo was not created: %v", err)
	}

	resp, err := http.Get(strings.TrimSuffix(url, "/repo") + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %d", resp.StatusCode)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("command: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("command did not stop after cancellation")
	}
}

func TestFlagDefaultsFromEnvironment(t *testing.T) {
	t.Setenv("MXOS_DATA", "/srv/mxos")
	t.Setenv("MXOS_LISTEN", "0.0.0.0:9000")
	cmd := newRootCmd()
	if got := cmd.Flag("data").DefValue; got != "/srv/mxos" {
		t.Errorf("--data default = %q", got)
	}
	if got := cmd.Flag("listen").DefValue; got != "0.0.0.0:9000" {
		t.Errorf("--listen default = %q", got)
	}

	t.Setenv("MXOS_DATA", "")
	t.Setenv("MXOS_LISTEN", "")
	cmd = newRootCmd()
	if got := cmd.Flag("data").DefValue; got != "./mxos-data" {
		t.Errorf("--data default without env = %q", got)
	}
	if got := cmd.Flag("listen").DefValue; got != "127.0.0.1:8080" {
		t.Errorf("--listen default without env = %q", got)
	}
}

func TestInvalidOptions(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"log-level", []string{"--log-level", "loud"}, "invalid log level"},
		{"log-format", []string{"--log-format", "xml"}, "invalid log format"},
		{"listen", []string{"--listen", "256.0.0.1:1"}, "listening on"},
		{"extra-arg", []string{"serve-now"}, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := newRootCmd()
			cmd.SetOut(io.Discard)
			cmd.SetErr(io.Discard)
			cmd.SetArgs(append([]string{"--data", t.TempDir()}, tt.args...))
			err := cmd.ExecuteContext(t.Context())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestPublicHostPort(t *testing.T) {
	host, _ := os.Hostname()
	tests := []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}, "127.0.0.1:8080"},
		{&net.TCPAddr{IP: net.ParseIP("::1"), Port: 8080}, "[::1]:8080"},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 80}, net.JoinHostPort(host, "80")},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 80}, net.JoinHostPort(host, "80")},
	}
	for _, tt := range tests {
		if got := publicHostPort(tt.addr); got != tt.want {
			t.Errorf("publicHostPort(%v) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}

func TestParseRepoLoops(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"auto", 0, true}, {"", 0, true}, {"off", -1, true}, {"0", -1, true},
		{"1", 1, true}, {"4", 4, true},
		{"-1", 0, false}, {"many", 0, false}, {"99999", 0, false},
	} {
		got, err := parseRepoLoops(tt.in)
		if (err == nil) != tt.ok || err == nil && got != tt.want {
			t.Errorf("parseRepoLoops(%q) = %d, %v; want %d, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
