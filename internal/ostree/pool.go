package ostree

import (
	"io"
	"sync"

	"github.com/klauspost/compress/flate"
)

var flatePool sync.Pool

// getFlateWriter reuses compressors: each holds about 1 MiB of tables.
func getFlateWriter(w io.Writer) *flate.Writer {
	if zw, ok := flatePool.Get().(*flate.Writer); ok {
		zw.Reset(w)
		return zw
	}
	zw, _ := flate.NewWriter(w, compressionLevel) // the level is a valid constant
	return zw
}

func putFlateWriter(zw *flate.Writer) { flatePool.Put(zw) }
