package channel

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// Parse never panics and every refusal wraps ErrInvalid.
func FuzzParse(f *testing.F) {
	for _, n := range []string{"testing", "stable", "edu"} {
		b, err := os.ReadFile(filepath.Join(shippedDir, n+Ext))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("name: x\nrefs: {x86_64: [1]}\n"))
	f.Add([]byte("&a [*a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a channel Validate refuses: %v", err)
		}
	})
}
