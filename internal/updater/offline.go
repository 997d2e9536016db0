package updater

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/rollout"
	"github.com/mxos-linux/mxos-update/internal/sysroot"
)

// Deciding without the server. When the update server cannot be reached
// (no answer, or a server error) the agent decides from the signed
// channel metadata alone, as the server would (rollout.Decide, the same
// code): the channel's rollout record says which release is current, its
// state, ramp and start (the device's own bucket against the ramp's share
// at the device clock) and the channel's barriers and dead ends; releases
// this machine rolled back from are never offered. The metadata comes
// from the configured mirrors' /metadata/ (a school mirror keeps working
// when the central server is down), else from this machine's own cache of
// the last verified metadata, while it has not expired. The offer then
// goes through every check of verify.go like a server's, and the download
// through the mirrors; the reports of that run wait in the queue
// (reportqueue.go).
//
// What only the server knows is not guessed: an admin's pin or hold. The
// agent remembers the server's last answer (LastAnswerFile); while it was
// a pin or a hold, nothing is offered offline. Nor is the fallback to the
// newest previously completed rollout (the signed record names only the
// current rollout). With insecure_no_metadata there is no offline decision.

// LastAnswerFile, in the sysroot's root, keeps the reason of the server's
// last answer (only rewritten when it changes).
const LastAnswerFile = "mxos-updater-last-answer.json"

// Server reasons (internal/updates) that only the server can give.
var serverOnlyReasons = map[string]bool{"pinned": true, "held": true, "pinned-release-missing": true}

type lastAnswer struct {
	Reason string `json:"reason"`
}

func (a *Agent) lastAnswerPath() string { return filepath.Join(a.Sys.Root(), LastAnswerFile) }

// rememberAnswer records the reason of a server answer when it changed.
func (a *Agent) rememberAnswer(reason string) {
	var prev lastAnswer
	if b, err := os.ReadFile(a.lastAnswerPath()); err == nil {
		_ = json.Unmarshal(b, &prev)
	}
	if prev.Reason == reason {
		return
	}
	b, _ := json.Marshal(lastAnswer{Reason: reason})
	if err := writeFileDurable(a.lastAnswerPath(), append(b, '\n'), 0o644); err != nil {
		a.say("Could not remember the server's answer: %v", err)
	}
}

// decideOffline answers a check from the signed channel metadata when the
// server could not be reached (cause). ok is false when there is nothing
// to decide from; the caller then returns cause. done must be called once
// the offer is checked (it removes the copy of the saved metadata that
// the checks read).
func (a *Agent) decideOffline(ctx context.Context, req api.CheckRequest, cause error) (resp api.CheckResponse, ok bool, done func()) {
	done = func() {}
	if a.Cfg.InsecureNoMetadata || a.Cfg.TrustedRoot == "" || a.metaDir != "" {
		return resp, false, done
	}
	var prev lastAnswer
	if b, err := os.ReadFile(a.lastAnswerPath()); err == nil {
		_ = json.Unmarshal(b, &prev)
	}
	if serverOnlyReasons[prev.Reason] {
		a.say("The server cannot be reached, and it last held this machine (%s); waiting for it.", prev.Reason)
		return resp, false, done
	}
	st, err := a.metadataState(ctx, nil) // the mirrors, then the server
	if err != nil {
		dir, cerr := a.cachedMetadataDir()
		if cerr != nil {
			return resp, false, done
		}
		// The checks of the offer read the same saved copy.
		a.metaDir = dir
		done = func() { a.metaDir = ""; os.RemoveAll(dir) }
		if st, err = a.metadataState(ctx, nil); err != nil {
			a.say("The server cannot be reached, and the saved channel metadata cannot be used: %v", err)
			return resp, false, done
		}
	}
	bad, err := a.Sys.BadCommits()
	if err != nil {
		return resp, false, done
	}
	a.say("The server cannot be reached (%v); deciding from the signed channel metadata.", cause)
	return decideFromState(st, req, bad, a.now()), true, done
}

// decideFromState is the offline decision itself (pure but for its
// inputs): bad maps the commits this machine rolled back from.
func decideFromState(st *channelmeta.State, req api.CheckRequest, bad map[string]sysroot.BadCommit, now time.Time) api.CheckResponse {
	ro, ok := st.Rollout(req.Channel, req.Arch)
	if !ok {
		return api.CheckResponse{Reason: "no-rollout"}
	}
	var rolledBack []string
	for _, r := range st.Releases {
		if _, isBad := bad[r.Commit]; isBad && r.Channel == req.Channel && r.Arch == req.Arch {
			rolledBack = append(rolledBack, r.Version)
		}
	}
	d := rollout.Decide(rollout.DecideInput{State: ro.State, Ramp: ro.Ramp, Start: ro.StartedAt, Now: now,
		Bucket: rollout.Bucket(req.DeviceID, ro.RolloutID), Current: req.Version, Target: ro.Version,
		RolledBackFrom: rolledBack, Graph: ro.Graph()})
	if !d.Offer {
		return api.CheckResponse{Reason: string(d.Reason)}
	}
	rel, ok := st.Lookup(req.Channel, req.Arch, d.Target)
	if !ok {
		return api.CheckResponse{Reason: string(rollout.ReasonInvalid)}
	}
	id := ""
	if d.Target == ro.Version {
		id = ro.RolloutID
	}
	return api.CheckResponse{Update: true, Reason: string(d.Reason), Target: &api.Target{Channel: rel.Channel, Arch: rel.Arch,
		Version: rel.Version, Ref: rel.Ref, Commit: rel.Commit, OCIDigest: rel.OCIDigest, RolloutID: id}}
}

// cachedMetadataDir copies this machine's cache of verified metadata to a
// temporary directory laid out as a metadata directory (the versioned
// names a TUF client asks for), so that it can be loaded again, with the
// cache itself as the baseline: its signatures and expiry are checked
// again, nothing is trusted because it was saved.
func (a *Agent) cachedMetadataDir() (string, error) {
	cache := filepath.Join(a.Sys.Root(), MetadataDir)
	ts, err := os.ReadFile(filepath.Join(cache, channelmeta.TimestampFile))
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "mxos-metadata-")
	if err != nil {
		return "", err
	}
	put := func(name string, b []byte) error { return os.WriteFile(filepath.Join(dir, name), b, 0o600) }
	if err := put(channelmeta.TimestampFile, ts); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	for _, role := range []string{channelmeta.SnapshotFile, channelmeta.TargetsFile, channelmeta.RolloutsFile} {
		b, err := os.ReadFile(filepath.Join(cache, role))
		if err != nil {
			os.RemoveAll(dir)
			return "", err
		}
		v, err := signedVersion(b)
		if err != nil {
			os.RemoveAll(dir)
			return "", fmt.Errorf("%s: %w", role, err)
		}
		if err := put(strconv.FormatInt(v, 10)+"."+role, b); err != nil {
			os.RemoveAll(dir)
			return "", err
		}
	}
	return dir, nil
}

// signedVersion reads signed.version of a metadata file.
func signedVersion(b []byte) (int64, error) {
	var f struct {
		Signed struct {
			Version int64 `json:"version"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return 0, err
	}
	if f.Signed.Version < 1 {
		return 0, errors.New("no version")
	}
	return f.Signed.Version, nil
}
