package ostree

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/klauspost/compress/flate"
)

// Limits that keep hostile objects from exhausting memory.
const (
	// MaxMetadataSize bounds commit, dirtree, dirmeta and commitmeta objects
	// (libostree's OSTREE_MAX_METADATA_SIZE is 10 MiB in 2022.7, 128 MiB now).
	MaxMetadataSize = 128 << 20

	// What a device's pull accepts (internal/ostree/pull): every writer
	// refuses larger metadata, so no release can be published that no
	// device would install (DeviceLimit).
	MaxCommitSize    = 16 << 20
	MaxDirTreeSize   = 8 << 20 // about 100,000 entries in one directory
	MaxDirMetaSize   = 256 << 10
	MaxSignatureSize = 64 << 10 // summary.sig and .commitmeta
	// maxFileHeaderSize bounds the GVariant header of a content object.
	maxFileHeaderSize = 1 << 20
	// compressionLevel matches ostree's archive default (zlib level 6).
	compressionLevel = 6
)

// contentHash starts the SHA-256 of a content object: BE32 length of the
// checksum header, 4 zero bytes of padding, the header, then the content.
func contentHash(h *FileHeader) (hash.Hash, error) {
	hdr, err := h.MarshalChecksumHeader()
	if err != nil {
		return nil, err
	}
	sum := sha256.New()
	var pre [8]byte
	binary.BigEndian.PutUint32(pre[:4], uint32(len(hdr)))
	sum.Write(pre[:])
	sum.Write(hdr)
	return sum, nil
}

// ContentChecksum computes the object name of a file from its header and
// content (nil for symlinks).
func ContentChecksum(h *FileHeader, content io.Reader) (Checksum, error) {
	var c Checksum
	sum, err := contentHash(h)
	if err != nil {
		return c, err
	}
	if content != nil {
		n, err := io.Copy(sum, content)
		if err != nil {
			return c, fmt.Errorf("reading content: %w", err)
		}
		if uint64(n) != h.Size {
			return c, fmt.Errorf("content is %d bytes, header says %d", n, h.Size)
		}
	}
	copy(c[:], sum.Sum(nil))
	return c, nil
}

// writeFilez writes the archive form of a content object to w and returns
// its checksum, computed from the uncompressed bytes as they pass.
func writeFilez(w io.Writer, h *FileHeader, content io.Reader) (Checksum, error) {
	var c Checksum
	ahdr, err := h.MarshalArchiveHeader()
	if err != nil {
		return c, err
	}
	var pre [8]byte
	binary.BigEndian.PutUint32(pre[:4], uint32(len(ahdr)))
	if _, err := w.Write(pre[:]); err != nil {
		return c, err
	}
	if _, err := w.Write(ahdr); err != nil {
		return c, err
	}
	sum, err := contentHash(h)
	if err != nil {
		return c, err
	}
	if !h.IsSymlink() {
		zw := getFlateWriter(w)
		defer putFlateWriter(zw)
		var n int64
		if content != nil {
			n, err = io.Copy(io.MultiWriter(zw, sum), content)
			if err != nil {
				return c, fmt.Errorf("compressing content: %w", err)
			}
		}
		if uint64(n) != h.Size {
			return c, fmt.Errorf("content is %d bytes, header says %d", n, h.Size)
		}
		if err := zw.Close(); err != nil {
			return c, err
		}
	}
	copy(c[:], sum.Sum(nil))
	return c, nil
}

// ContentReader is an opened .filez object: its header and a reader of its
// uncompressed content that checks, at EOF, both the declared size and the
// object checksum. Reading past the declared size is an error, so a
// decompression bomb stops at the size the header admits.
type ContentReader struct {
	Header *FileHeader
	r      io.Reader
	zr     io.ReadCloser
	sum    hash.Hash
	want   Checksum
	left   uint64
	done   bool
	tail   *bufio.Reader
	closer io.Closer
}

// OpenFilez parses a .filez stream. When want is non-zero the content is
// checked against it as it is read; Read returns an error wrapping
// ErrCorrupt instead of io.EOF on a mismatch.
func OpenFilez(r io.Reader, want Checksum) (*ContentReader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var pre [8]byte
	if _, err := io.ReadFull(br, pre[:]); err != nil {
		return nil, fmt.Errorf("%w: short file header: %v", ErrCorrupt, err)
	}
	n := binary.BigEndian.Uint32(pre[:4])
	if binary.BigEndian.Uint32(pre[4:]) != 0 {
		return nil, fmt.Errorf("%w: file header padding is not zero", ErrCorrupt)
	}
	if n > maxFileHeaderSize {
		return nil, fmt.Errorf("%w: file header of %d bytes", ErrTooLarge, n)
	}
	hb := make([]byte, n)
	if _, err := io.ReadFull(br, hb); err != nil {
		return nil, fmt.Errorf("%w: short file header: %v", ErrCorrupt, err)
	}
	h, err := ParseArchiveHeader(hb)
	if err != nil {
		return nil, err
	}
	cr := &ContentReader{Header: h, want: want, left: h.Size}
	if !want.IsZero() {
		if cr.sum, err = contentHash(h); err != nil {
			return nil, err
		}
	}
	if h.IsSymlink() {
		// A symlink has no deflate stream; anything after the header is junk.
		if _, err := br.ReadByte(); err != io.EOF {
			return nil, fmt.Errorf("%w: data after symlink header", ErrCorrupt)
		}
		cr.r = eofReader{}
		return cr, nil
	}
	cr.zr = flate.NewReader(br)
	cr.r = cr.zr
	cr.tail = br
	return cr, nil
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

func (cr *ContentReader) Read(p []byte) (int, error) {
	if cr.done {
		return 0, io.EOF
	}
	if cr.left > 0 {
		if len(p) == 0 {
			return 0, nil
		}
		if uint64(len(p)) > cr.left {
			p = p[:cr.left]
		}
		n, err := cr.r.Read(p)
		cr.left -= uint64(n)
		if cr.sum != nil {
			cr.sum.Write(p[:n])
		}
		switch {
		case err == io.EOF && cr.left != 0:
			return n, fmt.Errorf("%w: content ends %d bytes short of its declared size", ErrCorrupt, cr.left)
		case err == io.EOF || err == nil:
			return n, nil
		default:
			return n, fmt.Errorf("%w: decompressing: %v", ErrCorrupt, err)
		}
	}
	// All declared bytes read: the stream must end here.
	if cr.zr != nil {
		var one [1]byte
		m, zerr := io.ReadFull(cr.zr, one[:])
		if m > 0 {
			return 0, fmt.Errorf("%w: content is longer than its declared %d bytes", ErrCorrupt, cr.Header.Size)
		}
		if zerr != io.EOF && !errors.Is(zerr, io.ErrUnexpectedEOF) {
			return 0, fmt.Errorf("%w: decompressing: %v", ErrCorrupt, zerr)
		}
		if zerr == io.ErrUnexpectedEOF {
			return 0, fmt.Errorf("%w: truncated deflate stream", ErrCorrupt)
		}
		if _, terr := cr.tail.ReadByte(); terr != io.EOF {
			return 0, fmt.Errorf("%w: data after the deflate stream", ErrCorrupt)
		}
	}
	cr.done = true
	if cr.sum != nil {
		var got Checksum
		copy(got[:], cr.sum.Sum(nil))
		if got != cr.want {
			return 0, fmt.Errorf("%w: content checksum is %s", ErrCorrupt, got)
		}
	}
	return 0, io.EOF
}

// Close releases the decompressor.
func (cr *ContentReader) Close() error {
	var err error
	if cr.zr != nil {
		err = cr.zr.Close()
	}
	if cr.closer != nil {
		if cerr := cr.closer.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// DeviceLimit is the size of the largest object of type t a device
// accepts, or 0 for content objects (bounded by the server's settings).
func DeviceLimit(t ObjectType) int64 {
	switch t {
	case ObjCommit:
		return MaxCommitSize
	case ObjDirTree:
		return MaxDirTreeSize
	case ObjDirMeta:
		return MaxDirMetaSize
	case ObjCommitMeta:
		return MaxSignatureSize
	}
	return 0
}
