package registry

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/mxos-linux/mxos-update/internal/storage"
)

// An upload session is a directory DIR/uploads/<id> holding "info" (the
// repository and start time, written atomically) and "data" (the bytes
// received so far). The offset is the size of data, so nothing else has to
// be kept in step with it, and a session survives a restart as it is.

var uploadIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

type uploadInfo struct {
	Repo    string    `json:"repo"`
	Started time.Time `json:"started"`
}

// upload is an open session, locked against concurrent writers.
type upload struct {
	id   string
	dir  string
	data *os.File
}

func (s *Store) uploadDir(id string) string { return filepath.Join(s.dir, "uploads", id) }

// startUpload creates an empty session for repository name.
func (s *Store) startUpload(name string) (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	id := hex.EncodeToString(b)
	dir := s.uploadDir(id)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", fmt.Errorf("starting upload: %w", err)
	}
	info, _ := json.Marshal(uploadInfo{Repo: name, Started: time.Now().UTC()})
	if err := os.WriteFile(filepath.Join(dir, "data"), nil, 0o644); err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("starting upload: %w", err)
	}
	// info last: a session without it is incomplete and never opened.
	if err := storage.WriteFile(filepath.Join(dir, "info"), info, 0o644, storage.TempDir(s.tmp)); err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("starting upload: %w", err)
	}
	return id, nil
}

// openUpload opens session id of repository name and locks it. A session
// that is unknown, of another repository or busy with another request is
// refused.
func (s *Store) openUpload(name, id string) (*upload, error) {
	unknown := errorf(CodeBlobUploadUnknown, "upload %s is not known (it may have expired): start a new one", truncate(id))
	if !uploadIDRE.MatchString(id) {
		return nil, unknown
	}
	dir := s.uploadDir(id)
	b, err := os.ReadFile(filepath.Join(dir, "info"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, unknown
	}
	if err != nil {
		return nil, err
	}
	var info uploadInfo
	if json.Unmarshal(b, &info) != nil || info.Repo != name {
		return nil, unknown
	}
	f, err := os.OpenFile(filepath.Join(dir, "data"), os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, unknown
	}
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, errorf(CodeBlobUploadInvalid, "another request is writing to this upload").withStatus(416)
		}
		return nil, err
	}
	return &upload{id: id, dir: dir, data: f}, nil
}

func (u *upload) close() { u.data.Close() }

// size is the number of bytes received so far.
func (u *upload) size() (int64, error) {
	fi, err := u.data.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// appendChunk adds r at the end of the data. With rangeStart >= 0 the
// chunk must start exactly at the current end and hold rangeLen bytes; on
// any error the data is cut back to where it was, so a failed chunk can be
// sent again.
func (u *upload) appendChunk(r io.Reader, rangeStart, rangeLen int64) (int64, error) {
	off, err := u.size()
	if err != nil {
		return 0, err
	}
	if rangeStart >= 0 && rangeStart != off {
		return off, errorf(CodeBlobUploadInvalid, "chunk starts at %d but the upload has %d bytes", rangeStart, off).
			withStatus(416)
	}
	if _, err := u.data.Seek(off, io.SeekStart); err != nil {
		return off, err
	}
	src := r
	if rangeLen >= 0 {
		src = io.LimitReader(r, rangeLen+1)
	}
	n, err := io.Copy(u.data, src)
	if err == nil && rangeLen >= 0 && n != rangeLen {
		err = errorf(CodeBlobUploadInvalid, "chunk has %d bytes but Content-Range says %d", n, rangeLen).withStatus(416)
	}
	if err != nil {
		_ = u.data.Truncate(off)
		var e *Error
		if !errors.As(err, &e) {
			err = errorf(CodeBlobUploadInvalid, "reading the chunk failed: send it again")
		}
		return off, err
	}
	return off + n, nil
}

// finish moves the data into the blob store under d (after checking it)
// and ends the session. On a digest mismatch the session ends too and
// nothing is stored.
func (s *Store) finishUpload(name string, u *upload, d digest.Digest) error {
	if err := u.data.Sync(); err != nil {
		return err
	}
	err := s.blobs.PutFile(d, -1, filepath.Join(u.dir, "data"))
	if err == nil {
		s.gc.RLock()
		err = s.linkBlob(name, d)
		s.gc.RUnlock()
	} else {
		err = blobPutError(err)
	}
	u.close()
	_ = os.RemoveAll(u.dir)
	return err
}

// cancelUpload ends a session and drops its data.
func (s *Store) cancelUpload(u *upload) error {
	u.close()
	return os.RemoveAll(u.dir)
}

// expireUploads removes sessions idle for longer than UploadTTL and
// reports how many it removed.
func (s *Store) expireUploads(now time.Time) (int, error) {
	root := filepath.Join(s.dir, "uploads")
	ents, err := os.ReadDir(root)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		dir := filepath.Join(root, e.Name())
		fi, err := os.Stat(filepath.Join(dir, "data"))
		if err != nil {
			fi, err = e.Info() // an incomplete session: judge by the directory
			if err != nil {
				continue
			}
		}
		if now.Sub(fi.ModTime()) > s.opts.UploadTTL {
			if os.RemoveAll(dir) == nil {
				n++
			}
		}
	}
	return n, nil
}

// ExpireUploads removes upload sessions idle for longer than
// Options.UploadTTL and reports how many it removed. GC calls it; servers
// call it when they start, so sessions a crash left behind do not wait
// for the next GC.
func (s *Store) ExpireUploads(now time.Time) (int, error) { return s.expireUploads(now) }
