package ostree

import (
	"errors"
	"fmt"
)

// PutSummary publishes a summary made and signed elsewhere (a school
// mirror serves its upstream's exact bytes, which it cannot sign), with
// the same journaled swap as WriteSummary. delta-indexes/ is first
// rewritten for deltas (the deltas stored, with their superblock
// digests); the indexes are not signed, so a copy regenerates them from
// what it verified rather than trusting another server's.
func (t *Txn) PutSummary(summary, sig []byte, deltas map[DeltaID]Checksum) error {
	if len(summary) == 0 || len(sig) == 0 {
		return errors.New("summary: empty summary or signature")
	}
	if _, err := ParseSummary(summary); err != nil {
		return err
	}
	if err := t.repo.writeDeltaIndexes(t.stage, deltas); err != nil {
		return fmt.Errorf("summary: %w", err)
	}
	return t.swapSummary(map[string][]byte{"summary": summary, "summary.sig": sig})
}
