package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCheckListen(t *testing.T) {
	plain, withTLS, proxied := tlsOptions{}, tlsOptions{cert: "c.pem", key: "k.pem"}, tlsOptions{insecureHTTP: true}
	cases := []struct {
		opts   tlsOptions
		listen string
		want   string // "" for accepted
	}{
		{plain, "127.0.0.1:8080", ""},
		{plain, "127.0.0.2:8080", ""},
		{plain, "[::1]:8080", ""},
		{plain, "localhost:8080", ""},
		{plain, "0.0.0.0:8080", "refusing plain HTTP on 0.0.0.0:8080"},
		{plain, "[::]:8080", "refusing plain HTTP"},
		{plain, ":8080", "refusing plain HTTP"},
		{plain, "192.168.1.10:8080", "refusing plain HTTP"},
		{plain, "updates.example.mx:8080", ""}, // judged on the bound address
		{plain, "no-port", "--listen"},
		{withTLS, "0.0.0.0:8443", ""},
		{proxied, "0.0.0.0:8080", ""},
		{tlsOptions{cert: "c.pem"}, "127.0.0.1:8443", "go together"},
		{tlsOptions{key: "k.pem"}, "127.0.0.1:8443", "go together"},
	}
	for _, tc := range cases {
		err := tc.opts.checkListen(tc.listen)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v %s: %v, want %q", tc.opts, tc.listen, err, tc.want)
		}
	}
	if err := plain.checkBound(&net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 80}); err == nil {
		t.Error("plain HTTP bound to 10.0.0.1 accepted")
	}
	if err := plain.checkBound(&net.TCPAddr{IP: net.IPv6loopback, Port: 80}); err != nil {
		t.Errorf("loopback: %v", err)
	}
	if _, err := withTLS.serverTLS(); err == nil || !strings.Contains(err.Error(), "TLS certificate") {
		t.Errorf("missing certificate files: %v", err)
	}
}

// The shipped unit listens on every interface, so it must give TLS files.
func TestShippedUnitServesTLS(t *testing.T) {
	b, err := os.ReadFile("../../deploy/systemd/mxos-server.service")
	if err != nil {
		t.Fatal(err)
	}
	var o tlsOptions
	listen := ""
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Environment=MXOS_TLS_CERT="); ok {
			o.cert = v
		}
		if v, ok := strings.CutPrefix(line, "Environment=MXOS_TLS_KEY="); ok {
			o.key = v
		}
		if v, ok := strings.CutPrefix(line, "ExecStart=/usr/bin/mxos-server "); ok {
			f := strings.Fields(v)
			for i := range f[:len(f)-1] {
				if f[i] == "--listen" {
					listen = f[i+1]
				}
			}
			o.insecureHTTP = strings.Contains(v, "--insecure-http")
		}
	}
	if listen == "" {
		t.Fatal("the unit gives no --listen")
	}
	if err := o.checkListen(listen); err != nil {
		t.Fatalf("the shipped unit would not start: %v", err)
	}
}

// selfSigned writes a certificate for cn and its key as PEM files.
func selfSigned(t *testing.T, dir, cn string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

// A renewed certificate is served without a restart; a broken renewal
// keeps the old one serving.
func TestCertReload(t *testing.T) {
	dir := t.TempDir()
	cf, kf := selfSigned(t, dir, "old")
	l, err := newCertLoader(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	name := func() string {
		c, _ := l.get(nil)
		x, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return x.Subject.CommonName
	}
	later := time.Now().Add(time.Minute)
	selfSigned(t, dir, "new")
	os.Chtimes(cf, later, later)
	if got := name(); got != "old" {
		t.Fatalf("reloaded before the check interval: %s", got)
	}
	l.checked = time.Now().Add(-2 * certReloadEvery)
	if got := name(); got != "new" {
		t.Fatalf("after a renewal: %s", got)
	}
	os.WriteFile(kf, []byte("broken"), 0o600)
	os.Chtimes(kf, later.Add(time.Minute), later.Add(time.Minute))
	l.checked = time.Now().Add(-2 * certReloadEvery)
	if got := name(); got != "new" {
		t.Fatalf("after a broken renewal: %s", got)
	}
}
