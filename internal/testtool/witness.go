package testtool

import (
	"bytes"
	"encoding/base64"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// Witness is a running litewitness (filippo.io/torchwood, C2SP
// tlog-witness), the real peer a partner institution would run: its key
// lives in a dedicated ssh-agent, its state in SQLite.
type Witness struct {
	Name string
	URL  string // where add-checkpoint requests go
	VKey string // cosignature/v1 verifier key, for policies and devices
	db   string
	proc *exec.Cmd
}

// StartWitness starts a litewitness named name on 127.0.0.1 with a new
// Ed25519 key, stopped at the end of the test. It needs litewitness,
// witnessctl (go install filippo.io/torchwood/cmd/...@v0.6.1), ssh-agent,
// ssh-add and ssh-keygen.
func StartWitness(t testing.TB, name string) *Witness {
	t.Helper()
	for _, tool := range []string{"litewitness", "witnessctl", "ssh-agent", "ssh-add", "ssh-keygen"} {
		Require(t, tool)
	}
	dir := t.TempDir()
	run := func(env []string, name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	key := filepath.Join(dir, "key")
	run(nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", key)

	sock := filepath.Join(dir, "agent.sock")
	agent := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
	waitFor(t, "ssh-agent socket", func() bool { _, err := os.Stat(sock); return err == nil })
	run([]string{"SSH_AUTH_SOCK=" + sock}, "ssh-add", "-q", key)
	fp := strings.Fields(run(nil, "ssh-keygen", "-l", "-f", key+".pub"))
	if len(fp) < 2 {
		t.Fatalf("ssh-keygen -l printed %q", fp)
	}

	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	w := &Witness{Name: name, db: filepath.Join(dir, "witness.db"), VKey: cosignatureVKey(t, name, pub)}
	addr := freeAddr(t)
	w.URL = "http://" + addr
	var logs bytes.Buffer
	w.proc = exec.Command("litewitness", "-name", name, "-db", w.db, "-ssh-agent", sock, "-key", fp[1], "-listen", addr)
	w.proc.Stdout, w.proc.Stderr = &logs, &logs
	if err := w.proc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.Stop()
		if t.Failed() {
			t.Logf("litewitness %s:\n%s", name, logs.String())
		}
	})
	waitFor(t, "litewitness on "+addr, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return w
}

// AddLog makes the witness know a log: its origin and verifier key.
func (w *Witness) AddLog(t testing.TB, origin, vkey string) {
	t.Helper()
	for _, args := range [][]string{
		{"add-log", "-db", w.db, "-origin", origin},
		{"add-key", "-db", w.db, "-origin", origin, "-key", vkey},
	} {
		if out, err := exec.Command("witnessctl", args...).CombinedOutput(); err != nil {
			t.Fatalf("witnessctl %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
}

// Stop stops the witness (as if its host went away).
func (w *Witness) Stop() {
	if w.proc.ProcessState == nil {
		w.proc.Process.Kill()
		w.proc.Wait()
	}
}

// cosignatureVKey turns an OpenSSH Ed25519 public key line into the
// witness's cosignature/v1 verifier key.
func cosignatureVKey(t testing.TB, name string, line []byte) string {
	t.Helper()
	f := strings.Fields(string(line))
	if len(f) < 2 || f[0] != "ssh-ed25519" {
		t.Fatalf("not an ssh-ed25519 public key: %q", line)
	}
	blob, err := base64.StdEncoding.DecodeString(f[1])
	if err != nil || len(blob) < 32 {
		t.Fatalf("ssh public key: %v", err)
	}
	vkey, err := note.NewEd25519VerifierKey(name, blob[len(blob)-32:])
	if err != nil {
		t.Fatal(err)
	}
	cv, err := fnote.VKeyToCosignatureV1(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return cv
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitFor(t testing.TB, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("%s: not ready after 30 s", what)
}
