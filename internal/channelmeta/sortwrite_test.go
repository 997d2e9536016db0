package channelmeta

import (
	"slices"
	"testing"
)

// TestSortForWrite: a copy writes what a file names before the file:
// versioned roles by version, then current copies, timestamp.json last.
func TestSortForWrite(t *testing.T) {
	for _, tc := range []struct {
		name     string
		in, want []string
	}{
		{"whole directory",
			[]string{"timestamp.json", "targets.json", "3.snapshot.json", "2.root.json", "10.targets.json", "9.targets.json", "1.root.json", "4.rollouts.json", "root.json", "snapshot.json", "rollouts.json"},
			[]string{"1.root.json", "2.root.json", "4.rollouts.json", "9.targets.json", "10.targets.json", "3.snapshot.json", "rollouts.json", "root.json", "snapshot.json", "targets.json", "timestamp.json"}},
		{"others after timestamp",
			[]string{"x.tmp", "timestamp.json", "1.root.json"},
			[]string{"1.root.json", "timestamp.json", "x.tmp"}},
		{"empty", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := slices.Clone(tc.in)
			SortForWrite(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}
