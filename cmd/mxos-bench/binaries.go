package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// buildTags are the tags the project's binaries are built with (README,
// testtool.BuildTags): containers/image without cgo.
const buildTags = "containers_image_openpgp,containers_image_storage_stub,containers_image_docker_daemon_stub"

// ourBinary returns the binary of ours to run: the one given with --NAME,
// or cmd/NAME of this module built with the go tool into WORK/bin, once
// per run. The benchmark so measures exactly what users run (main, flag
// defaults, logger, signal handling), not a rebuild of it.
func (b *bench) ourBinary(ctx context.Context, name, given string) (string, error) {
	if given != "" {
		return given, nil
	}
	if p, ok := b.built[name]; ok {
		return p, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", fmt.Errorf("building %s (or pass --%s): %w", name, name, err)
	}
	out := filepath.Join(b.work, "bin", name)
	logf(b.stderr, "building %s from %s", name, root)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", buildTags, "-o", out, "./cmd/"+name)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s (or pass --%s): %w: %s", name, name, err, bytes.TrimSpace(msg))
	}
	if b.built == nil {
		b.built = map[string]string{}
	}
	b.built[name] = out
	return out, nil
}
