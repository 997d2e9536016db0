package updater

import (
	"testing"

	"github.com/mxos-linux/mxos-update/internal/i18n"
)

// The agent's messages that are constants, not literals, are in the
// catalog too (internal/i18n's source test sees only literals).
func TestConstMessagesInCatalog(t *testing.T) {
	for _, m := range []string{InsecureWarning} {
		if !i18n.Has(m) {
			t.Errorf("%q is not in the catalog", m)
		}
	}
}
