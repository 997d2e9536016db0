package updater

import (
	"errors"
	"os"
	"testing"
)

// FuzzParseConfig: any bytes give a valid configuration or an error
// wrapping ErrInvalid, never a panic; an accepted configuration always
// has its trust settings right (release keys, and signed metadata or the
// explicit insecure_no_metadata with online keys). Seeds: testdata/fuzz
// and the shipped example.
func FuzzParseConfig(f *testing.F) {
	if b, err := os.ReadFile("../../deploy/updater/config.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("server: https://u.example\ndevice_id: d\nchannel: stable\narch: x86_64\ntrusted_keys: /k\ninsecure_no_metadata: true\nonline_keys: /o\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not wrapping ErrInvalid: %v", err)
			}
			return
		}
		if c.TrustedKeys == "" {
			t.Fatal("accepted without trusted_keys")
		}
		if c.InsecureNoMetadata == (c.TrustedRoot != "") || c.InsecureNoMetadata != (c.OnlineKeys != "") {
			t.Fatalf("accepted trust settings: trusted_root %q insecure_no_metadata %v online_keys %q",
				c.TrustedRoot, c.InsecureNoMetadata, c.OnlineKeys)
		}
	})
}
