package imagename_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/oci/imagename"
)

func TestRepositoryForRef(t *testing.T) {
	cases := []struct {
		ref, repo, arch, channel string
		ok                       bool
	}{
		{"mxos/10/x86_64/stable", "mxos/10/x86_64", "x86_64", "stable", true},
		{"mxos/10/aarch64/edu", "mxos/10/aarch64", "aarch64", "edu", true},
		{"mxos/10/x86_64", "", "", "", false},
		{"other/10/x86_64/stable", "", "", "", false},
		{"mxos/ten/x86_64/stable", "", "", "", false},
		{"mxos/10/vax/stable", "", "", "", false},
		{"mxos/10/x86_64/stable/extra", "", "", "", false},
		{"mxos/10/x86_64/.hidden", "", "", "", false},
	}
	for _, tc := range cases {
		repo, arch, ch, err := imagename.RepositoryForRef(tc.ref)
		if (err == nil) != tc.ok || repo != tc.repo || arch != tc.arch || ch != tc.channel {
			t.Errorf("%s: %q %q %q %v", tc.ref, repo, arch, ch, err)
		}
		if err != nil && !errors.Is(err, imagename.ErrBadRef) {
			t.Errorf("%s: %v is not ErrBadRef", tc.ref, err)
		}
	}
}

func TestTags(t *testing.T) {
	cases := map[[2]string][]string{
		{"stable", "10.0.1"}:       {"stable", "stable-10.0.1"},
		{"edu", "10.1+build.2~rc"}: {"edu", "edu-10.1_build.2_rc"},
	}
	for in, want := range cases {
		if got := imagename.Tags(in[0], in[1]); !reflect.DeepEqual(got, want) {
			t.Errorf("Tags(%q, %q) = %v, want %v", in[0], in[1], got, want)
		}
	}
}
