package testtool

import (
	"bytes"
	"encoding/base64"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// No stock ostree in Debian (12's 2022.7, 13's 2025.2) is built with
// sign-ed25519, so interop tests check our ed25519 signatures with OpenSSL
// instead: these helpers turn the key file devices are given into what
// OpenSSL reads and run `openssl pkeyutl -verify -rawin`.

// Ed25519PublicPEM converts an ed25519.pub file (base64 raw 32-byte keys,
// one a line, ostree's verification-ed25519-file format) holding one key
// into PEM SubjectPublicKeyInfo. It decodes the file itself rather than
// with the product's parser, so the file format is checked too; the DER
// prefix is RFC 8410's for an Ed25519 key.
func Ed25519PublicPEM(t testing.TB, keyFile []byte) []byte {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(keyFile)))
	if err != nil || len(raw) != 32 {
		t.Fatalf("ed25519 public key file: want one base64 32-byte key, got %q (%v)", keyFile, err)
	}
	spki := append([]byte{0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00}, raw...)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki})
}

// OpenSSLVerifyEd25519 asks openssl whether sig is an ed25519 signature of
// data by the one key in the ed25519.pub file keyFile. It returns nil when
// openssl says "Signature Verified Successfully", else an error with its
// output. The openssl program is found with Require.
func OpenSSLVerifyEd25519(t testing.TB, keyFile string, data, sig []byte) error {
	t.Helper()
	openssl := Require(t, "openssl")
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string][]byte{"pub.pem": Ed25519PublicPEM(t, kb), "data": data, "sig": sig}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(openssl, "pkeyutl", "-verify", "-pubin", "-inkey", filepath.Join(dir, "pub.pem"), "-rawin",
		"-in", filepath.Join(dir, "data"), "-sigfile", filepath.Join(dir, "sig"))
	out, err := cmd.CombinedOutput()
	if err == nil && bytes.Contains(out, []byte("Signature Verified Successfully")) {
		return nil
	}
	return &openSSLError{err: err, out: strings.TrimSpace(string(out))}
}

type openSSLError struct {
	err error
	out string
}

func (e *openSSLError) Error() string {
	return "openssl pkeyutl -verify: " + strconv.Quote(e.out) + " (" + errString(e.err) + ")"
}

func errString(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

var hexByte = regexp.MustCompile(`0x[0-9a-fA-F]{2}\b`)

// ParseOstreeByteArrays reads the aay `ostree show
// --print-detached-metadata-key=KEY` prints (GVariant text such as
// [[byte 0x1f, 0x2e], [0x01, ...]]) into its byte arrays.
func ParseOstreeByteArrays(t testing.TB, out string) [][]byte {
	t.Helper()
	s := strings.TrimSpace(out)
	s = strings.TrimPrefix(s, "@aay ")
	if !strings.HasPrefix(s, "[") || !strings.HasSuffix(s, "]") {
		t.Fatalf("ostree show printed %q: want an array of byte arrays", out)
	}
	var arrays [][]byte
	for _, part := range strings.Split(s[1:len(s)-1], "]") {
		if strings.TrimSpace(strings.Trim(part, ", ")) == "" {
			continue
		}
		var b []byte
		for _, h := range hexByte.FindAllString(part, -1) {
			v, err := strconv.ParseUint(h[2:], 16, 8)
			if err != nil {
				t.Fatal(err)
			}
			b = append(b, byte(v))
		}
		arrays = append(arrays, b)
	}
	return arrays
}
