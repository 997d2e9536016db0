package updater

import (
	"github.com/mxos-linux/mxos-update/internal/i18n"

	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/rollout"
	"github.com/mxos-linux/mxos-update/internal/sign"
)

// What the agent checks about an offer before it downloads anything, and
// about the downloaded commit before it deploys it. The server is not
// trusted: it only chooses among releases the release key signed.
//
// Each key has one role. trusted_keys holds the release public keys: only
// a release signature makes a commit installable, and a commit signed by
// the server's online key alone is refused (the pull checks commits with
// these keys only). The online key signs the repository summary and the
// freshness of the channel metadata; the device learns it from the TUF
// root (trusted_root, following its signed rotations), never from
// trusted_keys, and a trusted_keys directory that holds an online key is a
// configuration error. So a stolen online key can delay or gate updates
// among release-signed commits, never install anything else.
//
//  1. The offer names this machine's arch and a channel it follows, and
//     its ref is mxos/<major>/<arch>/<channel> for that arch and channel.
//  2. The signed channel metadata (TUF, internal/channelmeta) is refreshed
//     from the server's /metadata/ or a mirror's, and the offer must be
//     exactly a release-signed release: same channel, arch, version,
//     commit and ref. Expired metadata (freeze), older metadata versions
//     (rollback; the trusted versions are kept in R/channel-metadata/
//     across runs) and bad signatures are refused. Its root names the
//     online keys the summary is checked with. Only with
//     insecure_no_metadata (servers without signed metadata) is this step
//     skipped, with a warning on every check: the summary is then checked
//     with the public keys in online_keys, and the commit's own release
//     signature, ref binding and timestamp are all that is checked.
//  3. The offered version is not older than the installed one, and an
//     offer of the installed version must be the installed commit: a
//     different commit carrying the booted version (a same-version swap,
//     e.g. a second build signed by mistake, or the same version promoted
//     to another channel) is refused in every mode. A move to another
//     channel therefore takes effect with that channel's next version.
//  4. The pull takes the offered commit by its checksum when the signed
//     metadata listed it (step 2) and the repository's signed summary
//     names a newer head: a barrier release the device must install
//     first is older than the branch's head. After the pull (which
//     checks the summary and commit signatures, the
//     ref binding, the timestamp and every object), the stored commit is
//     read back and must be bound to the offered ref and carry the offered
//     version.
//
// A refused or failed deploy leaves the local refs and the agent state as
// they were (install puts the ref the pull moved back).

// MetadataDir is the directory, under the sysroot, where the last trusted
// channel metadata is kept between runs (what makes a rollback of the
// metadata detectable after a reboot).
const MetadataDir = "channel-metadata"

// ErrRefused wraps every refusal of an offer by the device's own checks.
var ErrRefused = i18n.Errorf("update refused")

// refusef builds an ErrRefused error with a message for the technician.
func refusef(format string, args ...any) error {
	return i18n.Errorf("%w: %w", ErrRefused, i18n.Errorf(format, args...))
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

// checkVersion is step 3: installed is the current deployment's version
// and commit (empty when nothing is installed). Versions that do not
// parse are left to the pull's timestamp check, unless they are equal.
func checkVersion(t api.Target, installed, installedCommit string) error {
	if installed == "" {
		return nil
	}
	c, err := rollout.Compare(t.Version, installed)
	if err == nil && c < 0 {
		return refusef("the server offered version %s, older than the installed %s", t.Version, installed)
	}
	if (t.Version == installed || (err == nil && c == 0)) && t.Commit != installedCommit {
		return refusef("the server offered version %s as commit %.12s, but this machine runs version %s as commit %.12s: "+
			"another build of the installed version is never installed", t.Version, t.Commit, installed, installedCommit)
	}
	return nil
}

// offerTrust is what the checks of an offer established for its download.
type offerTrust struct {
	// summaryKeys check the repository summary: the online keys.
	summaryKeys []sign.Verifier
	// offline: the offer was decided from the signed metadata because the
	// server could not be reached (offline.go).
	offline bool
	// signedCommit: the offered commit is the one the release-signed
	// channel targets list for the version, so the pull may take it by
	// its checksum when the repository's head has moved past it (a
	// barrier release; pull.Options.ByChecksum).
	signedCommit bool
}

// summaryKeys returns the keys the repository summary must be signed
// with: the online keys of the trusted root (st), or of online_keys with
// insecure_no_metadata. It refuses a trusted_keys directory that holds one
// of them, since only release keys may make a commit installable.
func (a *Agent) summaryKeys(st *channelmeta.State) ([]sign.Verifier, error) {
	var keys []sign.Verifier
	if st != nil {
		if len(st.OnlineKeys) == 0 {
			return nil, refusef("the trusted root of the channel metadata names no Ed25519 online key to check the repository summary with")
		}
		keys = []sign.Verifier{sign.NewEd25519Verifier(st.OnlineKeys)}
	} else {
		var err error
		if keys, err = sign.LoadVerifiers(a.Cfg.OnlineKeys); err != nil {
			return nil, fmt.Errorf("%w: loading the online keys (online_keys): %w", ErrInvalid, err)
		}
	}
	release := keyIDs(a.Puller.Verifiers)
	for id := range keyIDs(keys) {
		if release[id] {
			return nil, fmt.Errorf("%w: trusted_keys holds the server's online key %s; it must hold release public keys only", ErrInvalid, id)
		}
	}
	return keys, nil
}

// keyIDs lists the public key identities of verifiers (Ed25519 keys in
// base64, OpenPGP fingerprints).
func keyIDs(vs []sign.Verifier) map[string]bool {
	out := map[string]bool{}
	for _, v := range vs {
		if k, ok := v.(sign.KeyIdentifier); ok {
			for _, id := range strings.Split(k.KeyID(), ",") {
				if id = strings.TrimSpace(id); id != "" {
					out[id] = true
				}
			}
		}
	}
	return out
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
// and no error only with insecure_no_metadata.
func (a *Agent) channelState(ctx context.Context) (*channelmeta.State, error) {
	if a.Cfg.InsecureNoMetadata {
		return nil, nil
	}
	if a.Cfg.TrustedRoot == "" {
		return nil, fmt.Errorf("%w: trusted_root is required (or insecure_no_metadata)", ErrInvalid)
	}
	return a.metadataState(ctx, nil)
}

// verifyOffer runs steps 1 to 3 on an offer; installed and
// installedCommit describe the current deployment ("" when nothing is
// installed).
func (a *Agent) verifyOffer(ctx context.Context, t api.Target, installed, installedCommit string) (offerTrust, error) {
	var tr offerTrust
	if err := a.checkTarget(t); err != nil {
		return tr, err
	}
	st, err := a.checkOfferMetadata(ctx, t) // mirrors.go
	if err != nil {
		return tr, err
	}
	if err := checkVersion(t, installed, installedCommit); err != nil {
		return tr, err
	}
	if tr.summaryKeys, err = a.summaryKeys(st); err != nil {
		return tr, err
	}
	tr.signedCommit = st != nil
	return tr, nil
}

// InsecureWarning is said on every check with insecure_no_metadata.
const InsecureWarning = "Warning: signed channel metadata is off (insecure_no_metadata): " +
	"a compromised server or mirror can hold this machine back or offer releases meant for others; " +
	"set trusted_root to the shipped root.json"

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

// dropTornMetadata removes cached metadata files that are not whole JSON.
// go-tuf renames its files into place before syncFiles can fsync them, so
// a power cut in between can leave an empty or torn file, which go-tuf
// then refuses for good (TestPowerCutDuringUpgrade found this). Without
// the file the next Load fetches that role again from the shipped or
// cached root; the installed version still bounds downgrades.
func dropTornMetadata(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if b, err := os.ReadFile(p); err == nil && !json.Valid(b) {
			os.Remove(p)
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
