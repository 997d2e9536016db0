package event

import "testing"

// Only release failures count toward auto-halt (failure 4 of issue 9).
func TestReportClasses(t *testing.T) {
	counted := map[Event]bool{HealthFailed: true, BootFailed: true, RolledBack: true}
	for _, e := range All {
		if !e.Valid() {
			t.Errorf("%s not valid", e)
		}
		if e.ReleaseFailure() != counted[e] {
			t.Errorf("%s.ReleaseFailure() = %v", e, !counted[e])
		}
	}
	if len(ReleaseFailures) != len(counted) {
		t.Errorf("ReleaseFailures = %v", ReleaseFailures)
	}
	for _, e := range ReleaseFailures {
		if !counted[e] {
			t.Errorf("ReleaseFailures lists %s", e)
		}
	}
}
