// Package buildinfo owns the version string the binaries print with
// --version: the one set at link time (-ldflags "-X
// github.com/mxos-linux/mxos-update/internal/buildinfo.version=10.0.3"),
// else the module version and VCS revision Go recorded, else "devel".
package buildinfo

import "runtime/debug"

var version string

// Version returns the build's version.
func Version() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	v := bi.Main.Version
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " (" + s.Value[:12] + ")"
		}
	}
	return v
}
