package main

import (
	"runtime/debug"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=..."; when it
// is not, versionString reads what the Go toolchain recorded in the binary.
var version = ""

// versionString says which build this is: the module version (set by `go
// install ...@vX.Y.Z`), else the VCS commit the binary was built from, so a
// bug report names the exact code.
func versionString() string {
	info, ok := debug.ReadBuildInfo()
	return describeBuild(version, info, ok)
}

func describeBuild(ldflagsVersion string, info *debug.BuildInfo, ok bool) string {
	v := ldflagsVersion
	if !ok {
		if v == "" {
			v = "dev"
		}
		return "sluice " + v
	}
	if v == "" {
		v = info.Main.Version
	}
	if v == "" || v == "(devel)" {
		v = "dev"
	}
	var rev, when string
	modified := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	parts := []string{"sluice", v}
	if rev != "" && !strings.Contains(v, shortRev(rev)) {
		c := "commit " + shortRev(rev)
		if modified {
			c += "+modified"
		}
		if when != "" {
			c += " " + when
		}
		parts = append(parts, "("+c+")")
	}
	parts = append(parts, info.GoVersion)
	return strings.Join(parts, " ")
}

func shortRev(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}
