package console

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/channel"
)

// TestMetadataExpiryWarnings: every page warns about signed metadata
// roles that expire within MetadataWarn or have expired, in the page's
// language, and says nothing about the others.
func TestMetadataExpiryWarnings(t *testing.T) {
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	chs, err := channel.LoadDir("../../channels")
	if err != nil {
		t.Fatal(err)
	}
	apiStub := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case api.Prefix + "/channels":
			_ = json.NewEncoder(w).Encode([]api.ChannelStatus{})
		default:
			_ = json.NewEncoder(w).Encode(api.ReportTimeline{Since: now, Bucket: 86400})
		}
	})
	c, err := New(Config{API: apiStub, Channels: chs, Now: func() time.Time { return now }, MetadataWarn: 14 * 24 * time.Hour,
		Identify: func(context.Context, string) (Identity, error) {
			return Identity{Name: "rel", Role: auth.RoleRelease}, nil
		},
		Metadata: func() ([]api.MetadataRole, error) {
			return []api.MetadataRole{
				{Role: "root", Expires: now.AddDate(1, 0, 0)},
				{Role: "targets", Expires: now.AddDate(0, 0, 3)},
				{Role: "mirror", Expires: now.Add(-time.Hour)},
			}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	for lang, want := range map[string][]string{
		"en":    {"The signed targets metadata expires on 2026-12-10 09:00 UTC", "The signed mirror metadata expired on 2026-12-07 08:00 UTC"},
		"es-MX": {"Los metadatos firmados targets vencen el 2026-12-10 09:00 UTC", "Los metadatos firmados mirror vencieron el 2026-12-07 08:00 UTC"},
	} {
		r := httptest.NewRequest("GET", "/console/channels", nil)
		r.Header.Set("Accept-Language", lang)
		r.AddCookie(&http.Cookie{Name: sessionCookie, Value: "mxos_x"})
		rec := httptest.NewRecorder()
		c.ServeHTTP(rec, r)
		body := rec.Body.String()
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: %d\n%s", lang, rec.Code, body)
		}
		for _, w := range want {
			if !strings.Contains(body, w) {
				t.Errorf("%s: no warning %q", lang, w)
			}
		}
		if strings.Contains(body, " root ") {
			t.Errorf("%s: a warning about root, which expires in a year", lang)
		}
	}
}
