package testtool

import (
	"bytes"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
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

var hexByte = regexp.MustCompile(`^0x[0-9a-fA-F]{2}$`)

// ParseOstreeByteArrays reads the aay `ostree show
// --print-detached-metadata-key=KEY` prints: GVariant text such as
// [[byte 0x1f, 0x2e], [0x01, ...]], where GLib prints an element that
// ends in its only NUL byte as a bytestring, b'...' with g_strescape
// escapes (so about one ed25519 signature in 300 comes out that way).
func ParseOstreeByteArrays(t testing.TB, out string) [][]byte {
	t.Helper()
	arrays, err := parseByteArrays(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("ostree show printed %q: %v", out, err)
	}
	return arrays
}

func parseByteArrays(s string) ([][]byte, error) {
	s = strings.TrimPrefix(s, "@aay ")
	if len(s) < 2 || s[0] != '[' || s[len(s)-1] != ']' {
		return nil, errors.New("want an array of byte arrays")
	}
	s = s[1 : len(s)-1]
	var arrays [][]byte
	for {
		s = strings.TrimLeft(s, " ,")
		s = strings.TrimPrefix(s, "@ay ")
		switch {
		case s == "":
			return arrays, nil
		case s[0] == '[':
			end := strings.IndexByte(s, ']')
			if end < 0 {
				return nil, errors.New("unterminated byte array")
			}
			b := []byte{}
			for _, f := range strings.FieldsFunc(s[1:end], func(r rune) bool { return r == ',' || r == ' ' }) {
				if f == "byte" {
					continue
				}
				if !hexByte.MatchString(f) {
					return nil, fmt.Errorf("%q is not a byte", f)
				}
				v, _ := strconv.ParseUint(f[2:], 16, 8)
				b = append(b, byte(v))
			}
			arrays = append(arrays, b)
			s = s[end+1:]
		case strings.HasPrefix(s, "b'") || strings.HasPrefix(s, `b"`):
			b, rest, err := unescapeBytestring(s[1:])
			if err != nil {
				return nil, err
			}
			arrays = append(arrays, b)
			s = rest
		default:
			return nil, fmt.Errorf("unexpected %q", s)
		}
	}
}

// unescapeBytestring reads a quoted bytestring (quote first) as GLib's
// g_variant_print writes it and returns its bytes with the NUL the text
// form leaves out, and what follows the closing quote.
func unescapeBytestring(s string) ([]byte, string, error) {
	q := s[0]
	var b []byte
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == q:
			return append(b, 0), s[i+1:], nil
		case c != '\\':
			b = append(b, c)
			continue
		}
		i++
		if i == len(s) {
			break
		}
		switch c := s[i]; c {
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'v':
			b = append(b, '\v')
		default:
			if c >= '0' && c <= '7' {
				n := 0
				for j := 0; j < 3 && i < len(s) && s[i] >= '0' && s[i] <= '7'; j++ {
					n = n*8 + int(s[i]-'0')
					i++
				}
				i--
				b = append(b, byte(n))
				continue
			}
			b = append(b, c) // \\, \", \'
		}
	}
	return nil, "", errors.New("unterminated bytestring")
}
