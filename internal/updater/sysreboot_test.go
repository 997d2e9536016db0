package updater

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemReboot: systemctl ended by the shutdown it started is a
// restart under way; a systemctl that refuses is an error with its words.
func TestSystemReboot(t *testing.T) {
	dir := t.TempDir()
	args := filepath.Join(dir, "args")
	for _, tt := range []struct {
		name, script, wantErr string
	}{
		{"queued", "exit 0", ""},
		{"terminated by the shutdown", "echo 'Failed to connect to bus: No such file or directory' >&2; kill -TERM $$; sleep 5", ""},
		{"killed by the shutdown", "kill -KILL $$; sleep 5", ""},
		{"refused", "echo 'Access denied' >&2; exit 1", "Access denied"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fake := filepath.Join(dir, "systemctl")
			body := "#!/bin/sh\necho \"$@\" >" + args + "\n" + tt.script + "\n"
			if err := os.WriteFile(fake, []byte(body), 0o755); err != nil {
				t.Fatal(err)
			}
			old := systemctl
			systemctl = fake
			defer func() { systemctl = old }()
			err := SystemReboot(context.Background())
			if tt.wantErr == "" && err != nil {
				t.Fatalf("SystemReboot: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("SystemReboot: %v, want an error with %q", err, tt.wantErr)
			}
			got, _ := os.ReadFile(args)
			if strings.TrimSpace(string(got)) != "--no-block --check-inhibitors=no reboot" {
				t.Fatalf("systemctl ran with %q", got)
			}
		})
	}
}
