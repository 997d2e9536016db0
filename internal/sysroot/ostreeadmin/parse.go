package ostreeadmin

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/mxos-linux/mxos-update/internal/ostree"
)

// errSyntax is wrapped by every parser here; callers wrap it further with
// the file or command it came from.
var errSyntax = errors.New("syntax error")

// maxStateFile bounds the files parsed here (boot loader entries, origin
// files, status output, the state file): all are a few hundred bytes.
const maxStateFile = 1 << 20

// blsEntry is the part of a Boot Loader Specification entry
// (boot/loader/entries/ostree-N-<stateroot>.conf) that ostree writes and
// reads back: the sort key and the kernel arguments.
type blsEntry struct {
	Title   string
	Version string
	Options string
}

// parseBLS reads "key value" lines; unknown keys are ignored, as
// libostree's bootconfig parser keeps but does not interpret them.
func parseBLS(b []byte) (blsEntry, error) {
	var e blsEntry
	if len(b) > maxStateFile {
		return e, fmt.Errorf("%w: entry larger than %d bytes", errSyntax, maxStateFile)
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, val, _ := strings.Cut(line, " ")
		val = strings.TrimSpace(val)
		switch key {
		case "title":
			e.Title = val
		case "version":
			e.Version = val
		case "options":
			e.Options = val
		}
	}
	if e.Version == "" {
		return e, fmt.Errorf("%w: no version line", errSyntax)
	}
	return e, nil
}

// bootLink is the ostree= kernel argument split into its parts:
// /ostree/boot.<B>/<stateroot>/<bootcsum>/<treeserial>.
type bootLink struct {
	BootVersion string // "0" or "1"
	Stateroot   string
	BootCsum    string
	TreeSerial  string
}

// Rel is the link's path relative to the sysroot.
func (l bootLink) Rel() string {
	return "ostree/boot." + l.BootVersion + "/" + l.Stateroot + "/" + l.BootCsum + "/" + l.TreeSerial
}

// parseOstreeKarg finds ostree=... in a kernel command line and checks
// every component, so the path it names stays inside the sysroot.
func parseOstreeKarg(options string) (bootLink, error) {
	var l bootLink
	var val string
	found := false
	for _, f := range strings.Fields(options) {
		if v, ok := strings.CutPrefix(f, "ostree="); ok {
			val, found = v, true
		}
	}
	if !found {
		return l, fmt.Errorf("%w: no ostree= kernel argument", errSyntax)
	}
	parts := strings.Split(strings.TrimPrefix(val, "/"), "/")
	if len(parts) != 5 || parts[0] != "ostree" {
		return l, fmt.Errorf("%w: ostree=%q is not /ostree/boot.N/STATEROOT/BOOTCSUM/SERIAL", errSyntax, val)
	}
	bv, ok := strings.CutPrefix(parts[1], "boot.")
	if !ok || (bv != "0" && bv != "1") {
		return l, fmt.Errorf("%w: ostree=%q: bad boot version", errSyntax, val)
	}
	if !validStateroot(parts[2]) {
		return l, fmt.Errorf("%w: ostree=%q: bad stateroot", errSyntax, val)
	}
	if _, err := ostree.ParseChecksum(parts[3]); err != nil {
		return l, fmt.Errorf("%w: ostree=%q: bad boot checksum", errSyntax, val)
	}
	if _, err := parseSerial(parts[4]); err != nil {
		return l, fmt.Errorf("%w: ostree=%q: bad tree serial", errSyntax, val)
	}
	return bootLink{BootVersion: bv, Stateroot: parts[2], BootCsum: parts[3], TreeSerial: parts[4]}, nil
}

// parseDeployLink reads the target of ostree/boot.N.M/<stateroot>/<bootcsum>/<serial>,
// which ostree writes as ../../../deploy/<stateroot>/deploy/<commit>.<serial>.
func parseDeployLink(target string) (stateroot, name string, err error) {
	rest, ok := strings.CutPrefix(target, "../../../deploy/")
	parts := strings.Split(rest, "/")
	if !ok || len(parts) != 3 || parts[1] != "deploy" || !validStateroot(parts[0]) {
		return "", "", fmt.Errorf("%w: deployment link -> %q", errSyntax, target)
	}
	if _, _, err := parseName(parts[2]); err != nil {
		return "", "", err
	}
	return parts[0], parts[2], nil
}

// parseName splits "<commit>.<serial>".
func parseName(name string) (ostree.Checksum, int, error) {
	c, ser, ok := strings.Cut(name, ".")
	if !ok {
		return ostree.Checksum{}, 0, fmt.Errorf("%w: deployment name %q", errSyntax, name)
	}
	sum, err := ostree.ParseChecksum(c)
	if err != nil {
		return ostree.Checksum{}, 0, fmt.Errorf("%w: deployment name %q", errSyntax, name)
	}
	n, err := parseSerial(ser)
	if err != nil {
		return ostree.Checksum{}, 0, fmt.Errorf("%w: deployment name %q", errSyntax, name)
	}
	return sum, n, nil
}

func parseSerial(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || strconv.Itoa(n) != s {
		return 0, fmt.Errorf("%w: serial %q", errSyntax, s)
	}
	return n, nil
}

// validStateroot accepts the names ostree admin os-init creates here: a
// path component of letters, digits, '-', '_' and '.', not starting with
// '.'.
func validStateroot(s string) bool {
	if s == "" || len(s) > 255 || s[0] == '.' {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return false
		}
	}
	return true
}

// keyFile is a parsed GKeyFile (the .origin format): group -> key -> value.
type keyFile map[string]map[string]string

// parseKeyFile reads the GKeyFile subset ostree writes: [group] headers,
// key=value lines, # comments, and the \s \n \t \r \\ escapes.
func parseKeyFile(b []byte) (keyFile, error) {
	if len(b) > maxStateFile {
		return nil, fmt.Errorf("%w: file larger than %d bytes", errSyntax, maxStateFile)
	}
	kf := keyFile{}
	group := ""
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimRight(line, "\r")
		t := strings.TrimSpace(line)
		switch {
		case t == "" || strings.HasPrefix(t, "#"):
		case strings.HasPrefix(t, "["):
			if !strings.HasSuffix(t, "]") || len(t) < 3 {
				return nil, fmt.Errorf("%w: line %d: bad group header", errSyntax, i+1)
			}
			group = t[1 : len(t)-1]
			if kf[group] == nil {
				kf[group] = map[string]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || group == "" {
				return nil, fmt.Errorf("%w: line %d: expected key=value inside a group", errSyntax, i+1)
			}
			uv, err := unescapeKeyFile(strings.TrimLeft(v, " \t"))
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", i+1, err)
			}
			kf[group][strings.TrimSpace(k)] = uv
		}
	}
	return kf, nil
}

func (kf keyFile) get(group, key string) string { return kf[group][key] }

func unescapeKeyFile(v string) (string, error) {
	if !strings.Contains(v, `\`) {
		return v, nil
	}
	var sb strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '\\' {
			sb.WriteByte(v[i])
			continue
		}
		i++
		if i == len(v) {
			return "", fmt.Errorf("%w: trailing backslash", errSyntax)
		}
		switch v[i] {
		case 's':
			sb.WriteByte(' ')
		case 'n':
			sb.WriteByte('\n')
		case 't':
			sb.WriteByte('\t')
		case 'r':
			sb.WriteByte('\r')
		case '\\':
			sb.WriteByte('\\')
		default:
			return "", fmt.Errorf("%w: unknown escape \\%c", errSyntax, v[i])
		}
	}
	return sb.String(), nil
}

// escapeKeyFile is the inverse of unescapeKeyFile, as g_key_file writes
// values: a leading or trailing space becomes \s so it survives readers
// that trim.
func escapeKeyFile(v string) string {
	var sb strings.Builder
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\':
			sb.WriteString(`\\`)
		case '\n':
			sb.WriteString(`\n`)
		case '\t':
			sb.WriteString(`\t`)
		case '\r':
			sb.WriteString(`\r`)
		case ' ':
			if i == 0 || i == len(v)-1 {
				sb.WriteString(`\s`)
			} else {
				sb.WriteByte(' ')
			}
		default:
			sb.WriteByte(c)
		}
	}
	return sb.String()
}

// StatusEntry is one deployment as `ostree admin status` prints it.
type StatusEntry struct {
	Stateroot string
	Name      string // <commit>.<serial>
	Commit    ostree.Checksum
	Serial    int
	Booted    bool // the "*" marker
	Pending   bool
	Rollback  bool
	Staged    bool
	Version   string // "Version:" line (the commit's version metadata)
	Refspec   string // "origin refspec:" line
	Pinned    bool
}

// parseStatus reads the output of `ostree admin status` (2022.7 format):
//
//   - mxos <commit>.<serial> (pending)
//     Version: 1.0
//     origin refspec: <refspec>
//
// "No deployments." gives an empty list. Lines it does not know inside a
// deployment (Unlocked:, GPG:, signature lines) are skipped.
func parseStatus(out []byte) ([]StatusEntry, error) {
	if len(out) > maxStateFile {
		return nil, fmt.Errorf("%w: status output larger than %d bytes", errSyntax, maxStateFile)
	}
	var list []StatusEntry
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 4096), maxStateFile)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "" || strings.TrimSpace(line) == "No deployments.":
		case strings.HasPrefix(line, "* ") || (strings.HasPrefix(line, "  ") && !strings.HasPrefix(line, "   ")):
			e, err := parseStatusHead(line)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
			list = append(list, e)
		case strings.HasPrefix(line, "    "):
			if len(list) == 0 {
				return nil, fmt.Errorf("%w: line %d: detail before any deployment", errSyntax, n)
			}
			e := &list[len(list)-1]
			t := strings.TrimSpace(line)
			if v, ok := strings.CutPrefix(t, "Version: "); ok {
				e.Version = v
			} else if v, ok := strings.CutPrefix(t, "origin refspec: "); ok {
				e.Refspec = v
			} else if t == "Pinned: yes" {
				e.Pinned = true
			}
		default:
			return nil, fmt.Errorf("%w: line %d: %q", errSyntax, n, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", errSyntax, err)
	}
	return list, nil
}

func parseStatusHead(line string) (StatusEntry, error) {
	var e StatusEntry
	e.Booted = strings.HasPrefix(line, "* ")
	f := strings.Fields(line[2:])
	if len(f) < 2 {
		return e, fmt.Errorf("%w: deployment line %q", errSyntax, line)
	}
	if !validStateroot(f[0]) {
		return e, fmt.Errorf("%w: stateroot %q", errSyntax, f[0])
	}
	c, serial, err := parseName(f[1])
	if err != nil {
		return e, err
	}
	e.Stateroot, e.Name, e.Commit, e.Serial = f[0], f[1], c, serial
	for _, m := range f[2:] {
		switch m {
		case "(pending)":
			e.Pending = true
		case "(rollback)":
			e.Rollback = true
		case "(staged)":
			e.Staged = true
		default:
			return e, fmt.Errorf("%w: unknown marker %q", errSyntax, m)
		}
	}
	return e, nil
}
