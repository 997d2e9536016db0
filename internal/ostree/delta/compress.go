package delta

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"sync"

	"github.com/ulikunitz/xz"
)

// Compressing parts
//
// A part's payload is compressed by the system's xz (xz-utils) when it is
// installed, and by the pure-Go encoder (github.com/ulikunitz/xz)
// otherwise. Both write the same format (one .xz stream, one LZMA2
// filter, CRC64, a dictionary of at most 8 MiB), which ostree 2022.7 and
// 2025.2 and this package's reader all decode; but the pure-Go encoder's
// single-candidate hash matcher leaves parts about 7% larger than liblzma
// (0.169 against 0.158 MB on the Debian minbase update of README
// "Static deltas", where libostree's own delta is 0.159 MB) and is about
// ten times slower. xz runs with one thread and explicit settings
// (preset 6, the dictionary of xzConfig), so the same payload gives the
// same bytes with the same xz; its output is decoded and compared with
// the payload before it is used, and any failure of xz falls back to the
// pure-Go encoder.

// systemXZ is the xz command used for parts; "" uses the pure-Go encoder
// only (tests set it).
var systemXZ = sync.OnceValue(func() string {
	p, err := exec.LookPath("xz")
	if err != nil {
		return ""
	}
	return p
})

// compressXZ returns the .xz stream of raw.
func compressXZ(ctx context.Context, raw []byte) ([]byte, error) {
	if p := systemXZ(); p != "" {
		b, err := runXZ(ctx, p, raw)
		if err == nil {
			return b, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	var out bytes.Buffer
	cfg := xzConfig(len(raw))
	w, err := cfg.NewWriter(&out)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(raw); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// runXZ compresses raw with the xz command at path and checks that the
// result decodes to raw with this package's reader.
func runXZ(ctx context.Context, path string, raw []byte) ([]byte, error) {
	dict := xzConfig(len(raw)).DictCap
	cmd := exec.CommandContext(ctx, path, "--compress", "--stdout", "--format=xz", "--check=crc64",
		"--threads=1", "--lzma2=preset=6,dict="+strconv.Itoa(dict))
	cmd.Stdin = bytes.NewReader(raw)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("xz: %w: %.200s", err, stderr.String())
	}
	zr, err := xz.ReaderConfig{SingleStream: true}.NewReader(bytes.NewReader(out.Bytes()))
	if err != nil {
		return nil, fmt.Errorf("xz output: %w", err)
	}
	back, err := io.ReadAll(io.LimitReader(zr, int64(len(raw))+1))
	if err != nil {
		return nil, fmt.Errorf("xz output: %w", err)
	}
	if !bytes.Equal(back, raw) {
		return nil, errors.New("xz output does not decode to the payload")
	}
	return out.Bytes(), nil
}
