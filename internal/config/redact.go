package config

import (
	"cmp"
	"os"
	"slices"
	"strings"
)

// minRedacted is the shortest environment value RedactEnv hides: shorter
// ones ("1", "on", "10s") are no secrets, and replacing them everywhere
// would garble the message's line numbers and words.
const minRedacted = 4

// RedactEnv is msg, a refusal of the config file at path, with every value
// the file takes from an environment variable ($NAME, ${NAME},
// ${NAME:-default}) replaced by the reference itself. A refusal quotes the
// value it refuses (an invalid duration, a URL with its password), which
// the terminal and the log may show; a surface read by others (the admin
// /status) must not. The file is read again: a refusal is rare, and its
// message is all that was kept of the load. A file that cannot be read
// now leaves msg as it is, its values no longer known.
func RedactEnv(path, msg string) string {
	data, err := readFile(path)
	if err != nil {
		return msg
	}
	type sub struct{ value, ref string }
	var subs []sub
	add := func(value, ref string) {
		if len(value) >= minRedacted {
			subs = append(subs, sub{value, ref})
		}
	}
	marked, refs := markEnv(data)
	for _, r := range refs {
		if v, ok := r.value(); ok {
			add(v, "${"+r.name+"}")
		}
	}
	// $NAME, which expandValue reads with os.Expand after the parse.
	for i := 0; i+1 < len(marked); i++ {
		if marked[i] != '$' {
			continue
		}
		if marked[i+1] == '$' {
			i++
			continue
		}
		end := i + 1
		for end < len(marked) && isNameByte(marked[end]) {
			end++
		}
		if end > i+1 {
			name := string(marked[i+1 : end])
			add(os.Getenv(name), "$"+name)
		}
	}
	// The longest first: a value holding another is replaced whole.
	slices.SortFunc(subs, func(a, b sub) int { return cmp.Compare(len(b.value), len(a.value)) })
	for _, s := range subs {
		msg = strings.ReplaceAll(msg, s.value, s.ref)
	}
	return msg
}
