package updater

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/tlog"
)

// The transparency log check (config log_key): before downloading, the
// agent fetches GET <server>/log/proof for the offered release and checks
// it with internal/tlog only (no server code): the checkpoint signed by
// the log key, the entry naming the offered channel, arch, version and
// commit, its inclusion, and consistency with the largest checkpoint this
// machine has seen, kept in LogCheckpointFile next to the agent state (it
// survives deployments) and moved forward only after a consistent larger
// one. A release absent from the log, a proof that does not verify, a
// forked or rolled-back log are refusals (ErrRefused): nothing is
// downloaded. A fork keeps the remembered checkpoint and saves the other
// one in LogCheckpointFile+".fork" as evidence. Without log_key the check
// is off. With log_witnesses, the checkpoint must also carry cosignatures
// of log_witness_threshold of those witnesses (all when 0): fewer is a
// refusal too, and the checkpoint is not remembered.

// LogCheckpointFile holds the largest log checkpoint the agent has seen.
const LogCheckpointFile = "mxos-updater-log-checkpoint"

// checkLog checks that t is in the transparency log (see above).
func (a *Agent) checkLog(ctx context.Context, t api.Target) error {
	if a.Cfg.LogKey == "" {
		return nil
	}
	key := strings.TrimSpace(a.Cfg.LogKey)
	if b, err := os.ReadFile(key); err == nil {
		key = strings.TrimSpace(string(b))
	}
	v, err := tlog.NewVerifier(key)
	if err != nil {
		return fmt.Errorf("log_key: %w", err)
	}
	witnesses, err := a.witnessPolicy()
	if err != nil {
		return err
	}
	state := filepath.Join(a.Sys.Root(), LogCheckpointFile)
	remembered, err := os.ReadFile(state)
	if errors.Is(err, os.ErrNotExist) {
		remembered = nil
	} else if err != nil {
		return fmt.Errorf("reading the remembered log checkpoint: %w", err)
	}
	var old uint64
	if remembered != nil {
		cp, err := tlog.OpenCheckpoint(remembered, v)
		if err != nil {
			return fmt.Errorf("the remembered log checkpoint %s: %w", state, err)
		}
		old = cp.Size
	}
	q := url.Values{"channel": {t.Channel}, "arch": {t.Arch}, "commit": {t.Commit}, "old": {strconv.FormatUint(old, 10)}}
	u := strings.TrimSuffix(a.Cfg.Server, "/") + "/log/proof?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("transparency log: %w", err)
	}
	hc := a.MetaHTTP
	if hc == nil {
		hc = &http.Client{Timeout: 60 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("fetching the transparency log proof: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, tlog.MaxProofSize+1))
	if err != nil {
		return fmt.Errorf("fetching the transparency log proof: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return fmt.Errorf("%w: version %s (commit %.12s) is not in the public transparency log", ErrRefused, t.Version, t.Commit)
	default:
		return fmt.Errorf("fetching the transparency log proof: %s", resp.Status)
	}
	p, err := tlog.ParseProof(body)
	if err != nil {
		return fmt.Errorf("%w: version %s: %v", ErrRefused, t.Version, err)
	}
	if err := witnesses.Check(p.Checkpoint); err != nil {
		return fmt.Errorf("%w: version %s: transparency log: %v", ErrRefused, t.Version, err)
	}
	next, err := tlog.CheckOffer(p, v, remembered, tlog.Offer{Channel: t.Channel, Arch: t.Arch, Version: t.Version, Commit: t.Commit})
	if err != nil {
		if errors.Is(err, tlog.ErrFork) {
			_ = writeFileDurable(state+".fork", p.Checkpoint, 0o644) // evidence; the refusal stands either way
		}
		return fmt.Errorf("%w: version %s: transparency log: %v", ErrRefused, t.Version, err)
	}
	if string(next) != string(remembered) {
		if err := writeFileDurable(state, next, 0o644); err != nil {
			return fmt.Errorf("remembering the log checkpoint: %w", err)
		}
	}
	return nil
}

// witnessPolicy reads log_witnesses (keys, or files holding one) and
// log_witness_threshold.
func (a *Agent) witnessPolicy() (tlog.WitnessPolicy, error) {
	keys := make([]string, 0, len(a.Cfg.LogWitnesses))
	for _, k := range a.Cfg.LogWitnesses {
		k = strings.TrimSpace(k)
		if b, err := os.ReadFile(k); err == nil {
			k = strings.TrimSpace(string(b))
		}
		keys = append(keys, k)
	}
	p, err := tlog.NewWitnessPolicy(keys, a.Cfg.LogWitnessThreshold)
	if err != nil {
		return p, fmt.Errorf("log_witnesses: %w", err)
	}
	return p, nil
}
