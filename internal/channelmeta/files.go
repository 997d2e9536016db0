package channelmeta

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// File names. With consistent snapshots (always on) devices fetch
// N.root.json, timestamp.json, N.snapshot.json, N.targets.json and
// N.rollouts.json; the unversioned copies are for humans and tools.
const (
	RootFile      = "root.json"
	TimestampFile = "timestamp.json"
	SnapshotFile  = "snapshot.json"
	TargetsFile   = "targets.json"
	RolloutsFile  = "rollouts.json"
)

// Size limits shared by the server (refuses to publish more) and the
// device (refuses to read more). They are go-tuf's defaults.
const (
	DefaultRootMax      = 512 << 10
	DefaultTimestampMax = 16 << 10
	DefaultSnapshotMax  = 2_000_000
	DefaultTargetsMax   = 5_000_000
	// MaxFileSize caps any single read, whatever a caller asks for.
	MaxFileSize = 8 << 20
)

// ReadFileLimited reads the file at path, refusing one larger than max
// bytes with ErrTooLarge, so a hostile or broken metadata file cannot make
// its reader hold it all in memory. The server's metadata store and the
// publisher read their files through it too.
func ReadFileLimited(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s: %w: more than %d bytes", path, ErrTooLarge, max)
	}
	return data, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// fileNameRE is every file a metadata directory holds for devices: a
// role's current copy or a versioned one.
var fileNameRE = regexp.MustCompile(`^(?:([1-9][0-9]{0,18})\.)?(root|timestamp|snapshot|targets|rollouts)\.json$`)

// SortForWrite orders the names of a metadata directory's files the way a
// copy of it (a mirror, a replica) writes them, so that a reader never
// meets a file naming one not written yet: versioned roots, rollouts,
// targets and snapshots, each by version; then the current copies;
// timestamp.json last; any other name after it.
func SortForWrite(names []string) {
	rank := func(name string) (int, int64) {
		m := fileNameRE.FindStringSubmatch(name)
		if m == nil {
			return 9, 0
		}
		v, _ := strconv.ParseInt(m[1], 10, 64)
		r := map[string]int{"root": 0, "rollouts": 1, "targets": 2, "snapshot": 3, "timestamp": 5}[m[2]]
		if m[1] == "" && m[2] != "timestamp" {
			r = 4
		}
		return r, v
	}
	slices.SortFunc(names, func(a, b string) int {
		ra, va := rank(a)
		rb, vb := rank(b)
		if c := cmp.Compare(ra, rb); c != 0 {
			return c
		}
		if c := cmp.Compare(va, vb); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
}
