// Package grubenv reads and writes GRUB's environment block
// (/boot/grub/grubenv): the file GRUB's load_env and save_env use, and
// that the device agent uses for greenboot-style boot counting
// (boot_counter, boot_success; see deploy/image/files/08_bootcount).
//
// The format is GRUB's: the line "# GRUB Environment Block", then
// "name=value" lines, the whole padded with '#' to a fixed size (1024
// bytes, or the size of the file being rewritten). In values, GRUB writes
// a backslash before '\' and newline. GRUB's save_env rewrites the file's
// blocks in place and refuses a file that is missing or too small, so the
// block must exist before the first boot (the image builder makes it).
//
// Update rewrites the block durably: a temporary file, fsync, rename,
// fsync of the directory, so a power cut leaves the old or the new block.
package grubenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/mxos-linux/mxos-update/internal/sysroot"
)

// Header is the first line of every environment block.
const Header = "# GRUB Environment Block\n"

// Size is the size GRUB gives a new block.
const Size = 1024

// ErrFormat: the file is not a GRUB environment block.
var ErrFormat = errors.New("not a GRUB environment block")

// Env is an environment block's variables, in file order.
type Env struct {
	names  []string
	values map[string]string
	size   int
}

// Parse decodes an environment block.
func Parse(b []byte) (*Env, error) {
	if !bytes.HasPrefix(b, []byte(Header)) {
		return nil, fmt.Errorf("%w: no %q header", ErrFormat, strings.TrimSpace(Header))
	}
	e := &Env{values: map[string]string{}, size: max(len(b), Size)}
	rest := b[len(Header):]
	for len(rest) > 0 {
		if rest[0] == '#' { // padding, or a comment GRUB skips
			i := bytes.IndexByte(rest, '\n')
			if i < 0 {
				break
			}
			rest = rest[i+1:]
			continue
		}
		var line []byte
		line, rest = readLine(rest)
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		name, value, ok := bytes.Cut(line, []byte("="))
		if !ok || !validName(string(name)) {
			return nil, fmt.Errorf("%w: bad line %q", ErrFormat, truncate(line))
		}
		if _, dup := e.values[string(name)]; !dup {
			e.names = append(e.names, string(name))
		}
		e.values[string(name)] = unescape(value)
	}
	return e, nil
}

// readLine splits off one line, honouring backslash-escaped newlines.
func readLine(b []byte) (line, rest []byte) {
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '\n':
			return b[:i], b[i+1:]
		}
	}
	return b, nil
}

func unescape(v []byte) string {
	var sb strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) {
			i++
		}
		sb.WriteByte(v[i])
	}
	return sb.String()
}

func truncate(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}

// validName: GRUB variable names the agent may set (letters, digits, _).
func validName(n string) bool {
	if n == "" || len(n) > 64 {
		return false
	}
	for _, c := range n {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// Get returns a variable's value.
func (e *Env) Get(name string) (string, bool) {
	v, ok := e.values[name]
	return v, ok
}

// Set sets a variable.
func (e *Env) Set(name, value string) error {
	if !validName(name) {
		return fmt.Errorf("grubenv: bad variable name %q", name)
	}
	if e.values == nil {
		e.values = map[string]string{}
	}
	if _, ok := e.values[name]; !ok {
		e.names = append(e.names, name)
	}
	e.values[name] = value
	return nil
}

// Unset removes a variable.
func (e *Env) Unset(name string) {
	if _, ok := e.values[name]; !ok {
		return
	}
	delete(e.values, name)
	for i, n := range e.names {
		if n == name {
			e.names = append(e.names[:i], e.names[i+1:]...)
			break
		}
	}
}

// Encode returns the block, padded to its size (Size, or the size of the
// block it was parsed from). Variables that do not fit are an error.
func (e *Env) Encode() ([]byte, error) {
	size := max(e.size, Size)
	var b bytes.Buffer
	b.WriteString(Header)
	for _, n := range e.names {
		b.WriteString(n)
		b.WriteByte('=')
		for _, c := range []byte(e.values[n]) {
			if c == '\\' || c == '\n' {
				b.WriteByte('\\')
			}
			b.WriteByte(c)
		}
		b.WriteByte('\n')
	}
	if b.Len() > size {
		return nil, fmt.Errorf("grubenv: %d bytes of variables do not fit in a %d-byte block", b.Len(), size)
	}
	b.Write(bytes.Repeat([]byte("#"), size-b.Len()))
	return b.Bytes(), nil
}

// Read reads and parses the block at path.
func Read(path string) (*Env, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("grubenv: %w", err)
	}
	e, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("grubenv %s: %w", path, err)
	}
	return e, nil
}

// Update reads the block at path, applies fn and writes it back durably
// (unchanged content is not rewritten).
func Update(path string, fn func(*Env) error) error {
	old, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("grubenv: %w", err)
	}
	e, err := Parse(old)
	if err != nil {
		return fmt.Errorf("grubenv %s: %w", path, err)
	}
	if err := fn(e); err != nil {
		return err
	}
	b, err := e.Encode()
	if err != nil {
		return fmt.Errorf("grubenv %s: %w", path, err)
	}
	if bytes.Equal(b, old) {
		return nil
	}
	if err := sysroot.WriteFileAtomic(path, b); err != nil {
		return fmt.Errorf("grubenv %s: %w", path, err)
	}
	return nil
}
