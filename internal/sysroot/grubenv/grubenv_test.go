package grubenv

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// grubMade is a block as grub-editenv writes it.
func grubMade(vars string) []byte {
	b := []byte(Header + vars)
	return append(b, bytes.Repeat([]byte("#"), Size-len(b))...)
}

func TestParseAndEncode(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want map[string]string
	}{
		{"empty", grubMade(""), map[string]string{}},
		{"counter", grubMade("boot_counter=3\nboot_success=0\n"), map[string]string{"boot_counter": "3", "boot_success": "0"}},
		{"escaped", grubMade("a=x\\\\y\\\nz\n"), map[string]string{"a": "x\\y\nz"}},
		{"bigger file", append(grubMade("saved_entry=0\n"), bytes.Repeat([]byte("#"), 3072)...), map[string]string{"saved_entry": "0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := Parse(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.want {
				if got, ok := e.Get(k); !ok || got != v {
					t.Fatalf("%s = %q %v, want %q", k, got, ok, v)
				}
			}
			if len(e.names) != len(tc.want) {
				t.Fatalf("names %v, want %v", e.names, tc.want)
			}
			out, err := e.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, tc.in) {
				t.Fatalf("round trip changed the block:\n%q\n%q", tc.in, out)
			}
		})
	}
}

func TestParseRefusesWhatIsNotABlock(t *testing.T) {
	for name, in := range map[string][]byte{
		"empty":     nil,
		"no header": []byte("boot_counter=3\n"),
		"no equals": grubMade("boot_counter\n"),
		"bad name":  grubMade("boot counter=3\n"),
	} {
		if _, err := Parse(in); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: %v, want ErrFormat", name, err)
		}
	}
}

func TestSetUnsetAndOverflow(t *testing.T) {
	e, err := Parse(grubMade("saved_entry=1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Set("boot_counter", "3"); err != nil {
		t.Fatal(err)
	}
	if err := e.Set("boot_success", "0"); err != nil {
		t.Fatal(err)
	}
	e.Unset("saved_entry")
	out, _ := e.Encode()
	if !bytes.Equal(out, grubMade("boot_counter=3\nboot_success=0\n")) {
		t.Fatalf("got %q", out)
	}
	if err := e.Set("a=b", "1"); err == nil {
		t.Fatal("Set accepted a name with '='")
	}
	if err := e.Set("big", strings.Repeat("x", Size)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Encode(); err == nil || !strings.Contains(err.Error(), "do not fit") {
		t.Fatalf("Encode of an over-full block: %v", err)
	}
}

func TestUpdateIsDurableAndLeavesBadFilesAlone(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "grubenv")
	if err := os.WriteFile(p, grubMade("boot_success=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Update(p, func(e *Env) error {
		e.Set("boot_counter", "3")
		return e.Set("boot_success", "0")
	}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(p)
	if !bytes.Equal(got, grubMade("boot_success=0\nboot_counter=3\n")) {
		t.Fatalf("after update: %q", got)
	}
	if _, err := os.Stat(p + ".tmp"); !os.IsNotExist(err) {
		t.Fatal("temporary file left behind")
	}
	bad := []byte("not an env block")
	if err := os.WriteFile(p, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Update(p, func(e *Env) error { return e.Set("boot_counter", "3") }); !errors.Is(err, ErrFormat) {
		t.Fatalf("update of a bad block: %v", err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, bad) {
		t.Fatal("a failed update changed the file")
	}
	if err := Update(filepath.Join(dir, "missing"), func(*Env) error { return nil }); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("update of a missing block: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(grubMade("boot_counter=3\nboot_success=0\n"))
	f.Add([]byte(Header + "a=\\\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Parse(b)
		if err != nil {
			return
		}
		out, err := e.Encode()
		if err != nil {
			return // variables longer than the block
		}
		e2, err := Parse(out)
		if err != nil {
			t.Fatalf("re-parse of an encoded block: %v", err)
		}
		for _, n := range e.names {
			v1, _ := e.Get(n)
			if v2, ok := e2.Get(n); !ok || v1 != v2 {
				t.Fatalf("%s: %q became %q", n, v1, v2)
			}
		}
	})
}
