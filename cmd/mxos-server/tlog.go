package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/mxos-linux/mxos-update/internal/tlogstore"
)

// openTransparencyLog opens the public release log in DIR/log, served at
// /log/, with its key from --tlog-key (DIR/log-key by default, generated
// at first start), and the witnesses of --tlog-witness-policy.
func (k keyOptions) openTransparencyLog(ctx context.Context, dataDir string, log *zap.Logger) (*tlogstore.Log, error) {
	key := k.tlogKey
	if key == "" {
		key = filepath.Join(dataDir, "log-key")
	}
	o := tlogstore.Options{Dir: filepath.Join(dataDir, "log"), KeyFile: key, Origin: k.tlogOrigin}
	if k.tlogWitnessPolicy != "" {
		p, err := os.ReadFile(k.tlogWitnessPolicy)
		if err != nil {
			return nil, fmt.Errorf("transparency log: witness policy: %w", err)
		}
		o.WitnessPolicy = p
	}
	l, err := tlogstore.Open(ctx, o)
	if err != nil {
		return nil, err
	}
	log.Info("transparency log at /log/", zap.String("origin", l.Origin()), zap.String("public_key", l.VerifierKey()))
	return l, nil
}

func closeTransparencyLog(l *tlogstore.Log, log *zap.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		log.Warn("closing the transparency log", zap.Error(err))
	}
}
