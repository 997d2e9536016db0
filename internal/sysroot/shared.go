package sysroot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/mxos-linux/mxos-update/internal/storage"
)

// The helpers here are exported for the ostree admin backend
// (internal/sysroot/ostreeadmin), which locks its state directory, keeps
// a state file of the same shape and lists deployments in the same order.

// Lock takes mu and then an exclusive flock on dir/.lock (other
// processes); the returned function releases both.
func Lock(mu *sync.Mutex, dir string) (func(), error) {
	mu.Lock()
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		mu.Unlock()
		return nil, fmt.Errorf("sysroot lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		mu.Unlock()
		return nil, fmt.Errorf("sysroot lock: %w", err)
	}
	return func() { f.Close(); mu.Unlock() }, nil
}

// WriteFileAtomic writes data (mode 0644) to path through the synced
// temporary file path+".tmp", renames it over path and syncs the
// directory. The temporary name is fixed (storage.WriteFile picks a
// random one) so that opening a sysroot after a crash can remove it.
func WriteFileAtomic(path string, data []byte) error {
	return storage.WriteFile(path, data, 0o644, storage.TempPath(path+".tmp"))
}

// ReadState decodes the JSON state file path into st; a missing file
// leaves st as it is. Bad JSON is ErrCorrupt, naming the file as shown.
func ReadState(path, shown string, st any) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sysroot: read state: %w", err)
	}
	if err := json.Unmarshal(b, st); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, shown, err)
	}
	return nil
}

// WriteState writes st to path as indented JSON with WriteFileAtomic.
func WriteState(path string, st any) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("sysroot: encode state: %w", err)
	}
	if err := WriteFileAtomic(path, append(b, '\n')); err != nil {
		return fmt.Errorf("sysroot: write state: %w", err)
	}
	return nil
}

// SortDeployments orders ds oldest first: by Origin.Created, then name.
func SortDeployments(ds []Deployment) {
	sort.SliceStable(ds, func(i, j int) bool {
		a, b := ds[i], ds[j]
		if !a.Origin.Created.Equal(b.Origin.Created) {
			return a.Origin.Created.Before(b.Origin.Created)
		}
		return a.Name < b.Name
	})
}
