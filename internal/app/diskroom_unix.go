//go:build unix

package app

import "syscall"

// diskFree is the bytes an unprivileged process may still write on the
// file system holding dir; ok is false when it cannot be read.
func diskFree(dir string) (free int64, ok bool) {
	var st syscall.Statfs_t
	if syscall.Statfs(dir, &st) != nil {
		return 0, false
	}
	return int64(st.Bavail) * int64(st.Bsize), true
}
