package storagetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/storage/s3store"
	"github.com/mxos-linux/mxos-update/internal/testtool"
)

// VersityGWVersion is the S3 server the tests start; .ci/run installs
// exactly this version (go install github.com/versity/versitygw/cmd/versitygw).
const VersityGWVersion = "v1.8.0"

// S3Server is a versitygw process with the posix backend, listening on
// 127.0.0.1, with its own random root credentials.
type S3Server struct {
	Endpoint  string
	AccessKey string
	SecretKey string
	Dir       string // the posix backend's root: one directory per bucket
}

// StartS3 starts versitygw (from PATH or GOPATH/bin) for the test and
// stops it at cleanup. A missing versitygw skips the test, or fails it
// under CI (testtool.Missing).
func StartS3(t testing.TB) *S3Server {
	t.Helper()
	bin := FindVersityGW()
	if bin == "" {
		testtool.Missing(t, "versitygw not found in PATH or GOPATH/bin (go install github.com/versity/versitygw/cmd/versitygw@"+VersityGWVersion+")")
		return nil
	}
	s := &S3Server{AccessKey: "mxos" + randHex(8), SecretKey: randHex(20), Dir: t.TempDir()}
	var lastErr error
	for range 3 {
		addr, err := freeAddr()
		if err != nil {
			t.Fatal(err)
		}
		if lastErr = s.start(t, bin, addr); lastErr == nil {
			return s
		}
	}
	t.Fatalf("starting versitygw: %v", lastErr)
	return nil
}

func (s *S3Server) start(t testing.TB, bin, addr string) error {
	logf, err := os.Create(filepath.Join(t.TempDir(), "versitygw.log"))
	if err != nil {
		return err
	}
	cmd := s.Command(bin, addr)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	done := make(chan struct{})
	var once sync.Once
	go func() { cmd.Wait(); logf.Close(); once.Do(func() { close(done) }) }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-done
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-done:
			out, _ := os.ReadFile(logf.Name())
			return fmt.Errorf("versitygw exited: %s", strings.TrimSpace(string(out)))
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("versitygw not listening on %s after 30 s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(stop)
	s.Endpoint = "http://" + addr
	return nil
}

// Command is versitygw (bin) with the posix backend on s.Dir listening on
// addr, with s's root credentials in its environment, not on the command
// line (ps). StartS3 runs it; mxos-bench fleet starts it as its own child.
func (s *S3Server) Command(bin, addr string) *exec.Cmd {
	cmd := exec.Command(bin, "--port", addr, "--quiet", "posix", s.Dir)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+s.AccessKey, "ROOT_SECRET_ACCESS_KEY="+s.SecretKey)
	return cmd
}

// Bucket creates a new bucket with a random name and returns the config
// that reaches it.
func (s *S3Server) Bucket(t testing.TB) s3store.Config {
	t.Helper()
	cfg := s3store.Config{
		Endpoint: s.Endpoint, Bucket: "mxos-" + randHex(6),
		AccessKey: s.AccessKey, SecretKey: s.SecretKey, TempDir: t.TempDir(),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s3store.CreateBucket(ctx, cfg); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	return cfg
}

// NewS3Store starts a server (one per call) and opens a store on a new
// bucket of it.
func NewS3Store(t testing.TB) *s3store.Store {
	t.Helper()
	srv := StartS3(t)
	st, err := s3store.New(context.Background(), srv.Bucket(t))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// FindVersityGW is the versitygw binary in PATH or GOPATH/bin, or "".
func FindVersityGW() string {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err != nil {
		return ""
	}
	for _, gp := range filepath.SplitList(strings.TrimSpace(string(out))) {
		p := filepath.Join(gp, "bin", "versitygw")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// StorageFile writes a --storage file (storageconfig's format, as the
// README shows it) naming bucket on s, with the credentials in files of
// their own (mode 0600) beside it in a new temporary directory. It returns
// the file and the secret key file, which a test may overwrite.
func (s *S3Server) StorageFile(t testing.TB, bucket string) (conf, secretFile string) {
	t.Helper()
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ak := write("access-key", s.AccessKey+"\n")
	secretFile = write("secret-key", s.SecretKey+"\n")
	conf = write("storage.yaml", "storage:\n  kind: s3\n  endpoint: "+s.Endpoint+"\n  bucket: "+bucket+
		"\n  access_key_file: "+ak+"\n  secret_key_file: "+secretFile+"\n")
	return conf, secretFile
}
