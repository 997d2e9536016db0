package testtool

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"
)

func TestParseByteArrays(t *testing.T) {
	tests := []struct {
		in   string
		want [][]byte
	}{
		{"[[byte 0x1f, 0x2e], [0x01]]", [][]byte{{0x1f, 0x2e}, {0x01}}},
		{"@aay []", nil},
		{"[@ay [], [byte 0xff]]", [][]byte{{}, {0xff}}},
		{`[[byte 0x8c, 0x00], b"\001\377\\'\"\n\177sig"]`, [][]byte{{0x8c, 0}, []byte("\x01\xff\\'\"\n\x7fsig\x00")}},
		{`[b'a\tb\'']`, [][]byte{[]byte("a\tb'\x00")}},
	}
	for _, tc := range tests {
		got, err := parseByteArrays(tc.in)
		if err != nil || len(got) != len(tc.want) {
			t.Errorf("%s: %q %v, want %q", tc.in, got, err, tc.want)
			continue
		}
		for i := range got {
			if !bytes.Equal(got[i], tc.want[i]) {
				t.Errorf("%s: element %d is %q, want %q", tc.in, i, got[i], tc.want[i])
			}
		}
	}
	for _, bad := range []string{"", "[[byte 0x1f]", "[[0x1g]]", `[b'abc]`, "[x]", "[[byte 256]]"} {
		if got, err := parseByteArrays(bad); err == nil {
			t.Errorf("%q parsed as %q", bad, got)
		}
	}
}

// TestOpenSSLVerifyEd25519 checks the helper itself against Go's
// crypto/ed25519: a good signature passes, a wrong one does not.
func TestOpenSSLVerifyEd25519(t *testing.T) {
	Require(t, "openssl")
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "ed25519.pub")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(pub)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	data := []byte("some\x00bytes")
	sig := ed25519.Sign(priv, data)
	if err := OpenSSLVerifyEd25519(t, keyFile, data, sig); err != nil {
		t.Fatalf("good signature: %v", err)
	}
	if err := OpenSSLVerifyEd25519(t, keyFile, append(data, 0), sig); err == nil {
		t.Fatal("openssl accepted a signature over other bytes")
	}
}
