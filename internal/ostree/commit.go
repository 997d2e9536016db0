package ostree

import (
	"fmt"
)

// WriteCommit stores a commit object and returns its checksum. The root
// tree and dirmeta must already be stored or staged in this transaction.
func (t *Txn) WriteCommit(c *Commit) (Checksum, error) {
	if !t.HasObject(c.RootTree, ObjDirTree) {
		return Checksum{}, fmt.Errorf("write commit: %w", &ObjectError{c.RootTree, ObjDirTree, ErrNotFound})
	}
	if !t.HasObject(c.RootMeta, ObjDirMeta) {
		return Checksum{}, fmt.Errorf("write commit: %w", &ObjectError{c.RootMeta, ObjDirMeta, ErrNotFound})
	}
	b, err := c.Marshal()
	if err != nil {
		return Checksum{}, fmt.Errorf("write commit: %w", err)
	}
	return t.WriteMetadata(ObjCommit, b, Checksum{})
}
