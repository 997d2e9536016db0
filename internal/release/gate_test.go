package release

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/channel"
	"github.com/mxos-linux/mxos-update/internal/rollout"
)

// gateSet is the shipped channels (testing, stable, edu) plus "lab", a
// channel only the token named ci-build may publish to.
func gateSet(t *testing.T) *channel.Set {
	t.Helper()
	shipped, err := channel.LoadDir(filepath.Join("..", "..", "channels"))
	if err != nil {
		t.Fatal(err)
	}
	lab, err := channel.Parse([]byte(`name: lab
description: nightly builds for one lab
refs: {x86_64: mxos/10/x86_64/lab}
publishers: ["token:ci-build"]
rollout: {ramp: "100%", halt_threshold: 0.5, min_samples: 1, window: 1h}
`))
	if err != nil {
		t.Fatal(err)
	}
	set, err := channel.NewSet(append(shipped.Channels(), lab)...)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// TestGateMatrix: every channel × action × caller. A direct publish to a
// promotion-only channel is refused for everyone (failure 5 of issue 9),
// promotions only from the channel's own source, and the publishers list
// is enforced for roles and named tokens alike.
func TestGateMatrix(t *testing.T) {
	set := gateSet(t)
	const (
		ok        = "ok"
		forbidden = "forbidden"
		promoOnly = "promotion-only"
		promotion = "promotion"
	)
	callers := map[string]Caller{
		"release":       {Role: auth.RoleRelease, Token: "alice"},
		"ci-build":      {Role: auth.RoleRelease, Token: "ci-build"},
		"admin":         {Role: auth.RoleAdmin, Token: "bob"},
		"device":        {Role: auth.RoleDevice, Token: "lab-1"},
		"none":          {},
		"unknown role":  {Role: "root", Token: "x"},
		"admin ci-name": {Role: auth.RoleAdmin, Token: "ci-build"},
	}
	type action struct {
		act  Action
		from string
	}
	publish := action{ActionPublish, ""}
	fromTesting, fromStable, fromEdu := action{ActionPromote, "testing"}, action{ActionPromote, "stable"}, action{ActionPromote, "edu"}
	// want[channel][action] for the release role; other callers below.
	want := map[string]map[action]string{
		"testing": {publish: ok, fromTesting: promotion, fromStable: promotion, fromEdu: promotion},
		"stable":  {publish: promoOnly, fromTesting: ok, fromStable: promotion, fromEdu: promotion},
		"edu":     {publish: promoOnly, fromTesting: promotion, fromStable: ok, fromEdu: promotion},
		// lab lists only token:ci-build, so the release role as such may not.
		"lab": {publish: forbidden, fromTesting: forbidden, fromStable: forbidden, fromEdu: forbidden},
	}
	classify := func(err error) string {
		switch {
		case err == nil:
			return ok
		case errors.Is(err, ErrForbidden):
			return forbidden
		case errors.Is(err, ErrPromotionOnly):
			if !errors.Is(err, channel.ErrPromotion) {
				return "promotion-only without ErrPromotion"
			}
			return promoOnly
		case errors.Is(err, channel.ErrPromotion):
			return promotion
		}
		return "other: " + err.Error()
	}
	for _, chName := range set.Names() {
		for act, releaseWant := range want[chName] {
			for who, caller := range callers {
				exp := releaseWant
				switch who {
				case "admin", "device", "none", "unknown role", "admin ci-name":
					exp = forbidden // only the release role publishes or promotes
				case "ci-build":
					if chName == "lab" {
						// Listed by name: the channel's rules apply as for the role.
						exp = map[action]string{publish: ok}[act]
						if exp == "" {
							exp = promotion
						}
					}
				}
				name := fmt.Sprintf("%s/%s-from-%s/%s", chName, act.act, act.from, who)
				err := Gate(set, chName, act.act, act.from, caller)
				if got := classify(err); got != exp {
					t.Errorf("%s: %s (%v), want %s", name, got, err, exp)
				}
				if err != nil && (strings.Contains(err.Error(), "%!") || err.Error() == "") {
					t.Errorf("%s: bad message %q", name, err)
				}
			}
		}
	}
	// The refusal says what to do instead.
	err := Gate(set, "stable", ActionPublish, "", callers["release"])
	if err == nil || err.Error() != "stable accepts promotions only: releases reach it from testing (publish to testing, then mxosctl promote --from testing --to stable --version VERSION)" {
		t.Errorf("publish to stable: %v", err)
	}
	if err := Gate(set, "nightly", ActionPublish, "", callers["release"]); !errors.Is(err, channel.ErrUnknownChannel) {
		t.Errorf("unknown channel: %v", err)
	}
	if err := Gate(set, "stable", ActionPromote, "nightly", callers["release"]); !errors.Is(err, channel.ErrUnknownChannel) {
		t.Errorf("unknown source: %v", err)
	}
	if err := Gate(set, "testing", ActionPublish, "stable", callers["release"]); !errors.Is(err, channel.ErrPromotion) {
		t.Errorf("publish with a source: %v", err)
	}
	if err := Gate(set, "testing", "delete", "", callers["release"]); !errors.Is(err, ErrForbidden) {
		t.Errorf("unknown action: %v", err)
	}
}

// mapStore is a release.Store in memory.
type mapStore struct {
	versions map[string][]string // channel/arch → newest first
	commits  map[string]string   // channel/arch/version → commit
	open     *OpenRollout
}

func (m *mapStore) Versions(_ context.Context, ch, arch string) ([]string, error) {
	return m.versions[ch+"/"+arch], nil
}

func (m *mapStore) Commit(_ context.Context, ch, arch, v string) (string, error) {
	c, ok := m.commits[ch+"/"+arch+"/"+v]
	if !ok {
		return "", ErrNoRelease
	}
	return c, nil
}

func (m *mapStore) OpenRollout(context.Context, string, string) (*OpenRollout, error) {
	return m.open, nil
}

// TestServicePlan: the API codes of the Service's refusals, and what a
// good plan carries.
func TestServicePlan(t *testing.T) {
	commit := strings.Repeat("ab", 32)
	st := &mapStore{
		versions: map[string][]string{"testing/x86_64": {"10.0.2", "10.0.1"}},
		commits:  map[string]string{"testing/x86_64/10.0.2": commit},
	}
	svc := &Service{Channels: gateSet(t), Store: st}
	rel := Caller{Role: auth.RoleRelease, Token: "alice"}
	req := func(ch, v, from string) api.ReleaseRequest {
		return api.ReleaseRequest{Channel: ch, Arch: "x86_64", Version: v, Commit: commit, Commitmeta: []byte{1}, PromotedFrom: from}
	}
	cases := []struct {
		name   string
		caller Caller
		req    api.ReleaseRequest
		code   api.Code
	}{
		{"publish to stable", rel, req("stable", "10.0.3", ""), api.CodePromotion},
		{"admin publishes", Caller{Role: auth.RoleAdmin}, req("testing", "10.0.3", ""), api.CodeForbidden},
		{"unknown channel", rel, req("nightly", "10.0.3", ""), api.CodeUnknownChannel},
		{"unknown arch", rel, func() api.ReleaseRequest { r := req("testing", "10.0.3", ""); r.Arch = "riscv64"; return r }(), api.CodeUnknownArch},
		{"duplicate", rel, req("testing", "10.0.2", ""), api.CodeDuplicateVersion},
		{"older", rel, req("testing", "10.0.0", ""), api.CodeVersionOrder},
		{"not on source", rel, req("stable", "10.0.1", "testing"), api.CodeNotFound},
		{"bad commit", rel, func() api.ReleaseRequest { r := req("testing", "10.0.3", ""); r.Commit = "xyz"; return r }(), api.CodeBadRequest},
		{"no signatures", rel, func() api.ReleaseRequest { r := req("testing", "10.0.3", ""); r.Commitmeta = nil; return r }(), api.CodeBadRequest},
	}
	for _, tc := range cases {
		_, err := svc.Plan(context.Background(), tc.caller, tc.req)
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Code != tc.code {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.code)
		}
	}
	p, err := svc.Plan(context.Background(), rel, req("stable", "10.0.2", "testing"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Action != ActionPromote || p.Ref != "mxos/10/x86_64/stable" || p.SourceRef != "mxos/10/x86_64/testing" ||
		p.SourceCommit.String() != commit || p.Ramp == "" {
		t.Fatalf("plan: %+v", p)
	}
	st.open = &OpenRollout{ID: "r1", Version: "10.0.2", State: rollout.StateActive}
	if _, err := svc.Plan(context.Background(), rel, req("testing", "10.0.3", "")); !errors.Is(err, &api.Error{Code: api.CodeConflict}) {
		t.Fatalf("open rollout: %v", err)
	}
	r := req("testing", "10.0.3", "")
	r.Ramp = "none"
	if p, err := svc.Plan(context.Background(), rel, r); err != nil || p.Ramp != "" {
		t.Fatalf("ramp none with an open rollout: %+v %v", p, err)
	}
}
