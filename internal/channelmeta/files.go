package channelmeta

import (
	"fmt"
	"io"
	"os"
	"slices"
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

func readLimited(path string, max int64) ([]byte, error) {
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
