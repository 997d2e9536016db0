package pull

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/mxos-linux/mxos-update/internal/ostree"
)

// listObjects lists the objects a repository holds by reading its 256
// objects/XX directories: a few hundred system calls instead of one
// stat per object of the commit, which is what dominates a pull that
// finds most of the tree already present (an update). Names that are not
// well-formed objects are ignored, as ostree does.
func listObjects(repo *ostree.Repo) (map[ostree.ObjectRef]bool, error) {
	root := filepath.Join(repo.Path(), "objects")
	out := map[ostree.ObjectRef]bool{}
	var b [32]byte
	for i := range 256 {
		dir := filepath.Join(root, fmt.Sprintf("%02x", i))
		f, err := os.Open(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("listing objects: %w", err)
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("listing objects: %w", err)
		}
		b[0] = byte(i)
		for _, name := range names {
			hexRest, ext, ok := strings.Cut(name, ".")
			if !ok || len(hexRest) != 62 || strings.ToLower(hexRest) != hexRest {
				continue // the object's path would differ from this name
			}
			t, ok := objectType(ext)
			if !ok {
				continue
			}
			if _, err := hex.Decode(b[1:], []byte(hexRest)); err != nil {
				continue
			}
			out[ostree.ObjectRef{Checksum: ostree.Checksum(b), Type: t}] = true
		}
	}
	return out, nil
}

// objectType maps an object file extension to its type; only the types a
// pull stores are listed.
func objectType(ext string) (ostree.ObjectType, bool) {
	switch ext {
	case "filez":
		return ostree.ObjFile, true
	case "dirtree":
		return ostree.ObjDirTree, true
	case "dirmeta":
		return ostree.ObjDirMeta, true
	case "commit":
		return ostree.ObjCommit, true
	}
	return 0, false
}
