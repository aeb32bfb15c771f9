package main

import (
	"runtime/debug"
	"strings"
)

// Build stamps, set with -ldflags "-X main.version=... -X main.commit=...":
// scripts/build.sh sets commit, commitTime and commitModified from git, and
// the image builds set version. Go stamps the commit itself (vcs.revision)
// only in a plain clone: it takes a repository root for a .git directory,
// and a git worktree's .git is a file (golang/go#58218), so a build in a
// worktree carries no commit, or the one of a repository enclosing it. The
// -ldflags stamps therefore win over what Go recorded.
var (
	version        = ""
	commit         = ""
	commitTime     = ""
	commitModified = ""
)

// buildStamps are the -ldflags stamps of one binary.
type buildStamps struct {
	version, commit, commitTime, commitModified string
}

// versionString says which build this is, as `go version -m` would: the
// module version (set by `go install ...@vX.Y.Z` or -X main.version), the
// commit it was built from with "+modified" for an uncommitted tree and the
// commit time, and the Go release, so a bug report names the exact code.
func versionString() string {
	info, ok := debug.ReadBuildInfo()
	return describeBuild(buildStamps{version, commit, commitTime, commitModified}, info, ok)
}

func describeBuild(stamps buildStamps, info *debug.BuildInfo, ok bool) string {
	v := stamps.version
	if ok && v == "" {
		v = info.Main.Version
	}
	if v == "" || v == "(devel)" {
		v = "dev"
	}
	rev, when, modified := stamps.commit, stamps.commitTime, stamps.commitModified == "true"
	if rev == "" && ok {
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
	if ok {
		parts = append(parts, info.GoVersion)
	}
	return strings.Join(parts, " ")
}

func shortRev(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}
