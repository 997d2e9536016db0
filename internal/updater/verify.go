package updater

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/rollout"
)

// What the agent checks about an offer before it downloads anything, and
// about the downloaded commit before it deploys it. The server is not
// trusted: it only chooses among releases the release key signed.
//
//  1. The offer names this machine's arch and a channel it follows, and
//     its ref is mxos/<major>/<arch>/<channel> for that arch and channel.
//  2. With a trusted_root configured, the signed channel metadata (TUF,
//     internal/channelmeta) is refreshed from the server's /metadata/ or a
//     mirror's, and the offer must be exactly a release-signed release:
//     same channel, arch, version, commit and ref. Expired metadata
//     (freeze), older metadata versions (rollback; the trusted versions
//     are kept in R/channel-metadata/ across runs) and bad signatures are
//     refused. Without trusted_root (older installs, servers without
//     signed metadata) this step is skipped: the commit's own signature,
//     ref binding and timestamp are then all that is checked.
//  3. The offered version is not older than the installed one.
//  4. After the pull (which checks the summary and commit signatures, the
//     ref binding, the timestamp and every object), the stored commit is
//     read back and must be bound to the offered ref and carry the offered
//     version.

// MetadataDir is the directory, under the sysroot, where the last trusted
// channel metadata is kept between runs (what makes a rollback of the
// metadata detectable after a reboot).
const MetadataDir = "channel-metadata"

// ErrRefused wraps every refusal of an offer by the device's own checks.
var ErrRefused = errors.New("update refused")

// refusef builds an ErrRefused error with a message for the technician.
func refusef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, args...))
}

// channelsAllowed returns the channels this machine may be moved to.
func (a *Agent) channelsAllowed() []string {
	return append([]string{a.Cfg.Channel}, a.Cfg.AllowedChannels...)
}

// checkTarget is step 1: the offer's channel, arch and ref.
func (a *Agent) checkTarget(t api.Target) error {
	if t.Arch != a.Cfg.Arch {
		return refusef("the server offered version %s for %q, but this machine is %s", t.Version, t.Arch, a.Cfg.Arch)
	}
	allowed := false
	for _, c := range a.channelsAllowed() {
		allowed = allowed || c == t.Channel
	}
	if !allowed {
		return refusef("the server offered version %s of channel %q, but this machine follows %s (allowed_channels lists the others it may be moved to)",
			t.Version, t.Channel, strings.Join(a.channelsAllowed(), ", "))
	}
	parts := strings.Split(t.Ref, "/")
	if len(parts) != 4 || parts[0] != "mxos" || parts[1] == "" || parts[2] != a.Cfg.Arch || parts[3] != t.Channel {
		return refusef("the server offered version %s on branch %q, which is not mxos/<major>/%s/%s", t.Version, t.Ref, a.Cfg.Arch, t.Channel)
	}
	if err := ostree.ValidateRef(t.Ref); err != nil {
		return refusef("the server offered a bad branch name: %v", err)
	}
	return nil
}

// checkNotOlder is step 3. Versions that do not parse are left to the
// pull's timestamp check.
func checkNotOlder(t api.Target, installed string) error {
	if installed == "" {
		return nil
	}
	c, err := rollout.Compare(t.Version, installed)
	if err == nil && c < 0 {
		return refusef("the server offered version %s, older than the installed %s", t.Version, installed)
	}
	return nil
}

// metadataURLs lists where the channel metadata is fetched from: for each
// mirror ending in /repo its /metadata/ sibling (a LAN mirror first, as
// configured), then the server's own.
func (a *Agent) metadataURLs() []string {
	var out []string
	seen := map[string]bool{}
	add := func(u string) {
		if !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	for _, m := range a.Cfg.Mirrors {
		if base, ok := strings.CutSuffix(strings.TrimRight(m, "/"), "/repo"); ok {
			add(base + "/metadata/")
		}
	}
	add(strings.TrimRight(a.Cfg.Server, "/") + "/metadata/")
	return out
}

// channelState is step 2's refresh: it loads and verifies the channel
// metadata, trying each metadata URL in turn (mirrors.go). It returns nil
// and no error when no trusted_root is configured.
func (a *Agent) channelState(ctx context.Context) (*channelmeta.State, error) {
	if a.Cfg.TrustedRoot == "" {
		return nil, nil
	}
	return a.metadataState(ctx, nil)
}

// verifyOffer runs steps 1 to 3 on an offer; installed is the version of
// the current deployment ("" when nothing is installed).
func (a *Agent) verifyOffer(ctx context.Context, t api.Target, installed string) error {
	if err := a.checkTarget(t); err != nil {
		return err
	}
	if err := a.checkOfferMetadata(ctx, t); err != nil { // mirrors.go
		return err
	}
	return checkNotOlder(t, installed)
}

// verifyPulled is step 4, on the commit the pull stored.
func (a *Agent) verifyPulled(t api.Target, c ostree.Checksum) error {
	cm, err := a.Repo.ReadCommit(c)
	if err != nil {
		return fmt.Errorf("reading the downloaded commit: %w", err)
	}
	bound := false
	for _, b := range cm.RefBindings() {
		bound = bound || b == t.Ref
	}
	if !bound {
		return refusef("the downloaded commit %s is bound to %v, not to %s", c, cm.RefBindings(), t.Ref)
	}
	if v := cm.Version(); v != t.Version {
		return refusef("the downloaded commit %s is version %q, the server offered %s", c, v, t.Version)
	}
	return nil
}

// removeStaleTemps deletes the temporary files go-tuf leaves in the cache
// when the updater is killed while it saves metadata ("tuf_tmp*"). Only
// old ones: another updater process may be writing a fresh one.
func removeStaleTemps(dir string, now time.Time) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "tuf_tmp") {
			continue
		}
		if info, err := e.Info(); err == nil && now.Sub(info.ModTime()) > time.Hour {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// syncFiles fsyncs every file of dir, then dir itself.
func syncFiles(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), "tuf_tmp") {
			continue
		}
		if err := fsync(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return fsync(dir)
}

func fsync(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
