package config

import (
	"cmp"
	"reflect"
	"slices"
	"strings"
)

// nearestKey is the allowed key a misspelt one most likely meant: the one
// at the smallest edit distance, if that distance is small for the key's
// length (at most 1 for keys of up to 4 letters, 2 up to 8, then 3),
// else "". Case is ignored ("Admission" means admission). Ties go to the
// first in allowed.
func nearestKey(key string, allowed []string) string {
	lower := strings.ToLower(key)
	limit := 3
	switch n := len([]rune(lower)); {
	case n <= 4:
		limit = 1
	case n <= 8:
		limit = 2
	}
	best, bestDist := "", limit+1
	for _, a := range allowed {
		if d := EditDistance(lower, a); d < bestDist {
			best, bestDist = a, d
		}
	}
	return best
}

// EditDistance is the optimal string alignment distance (Levenshtein plus
// transposition of two adjacent letters, the commonest typo) between a
// and b, by runes. The command line's suggestions use it too, so a
// swapped pair of letters is one typo in a flag as in a config key.
func EditDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	// Three rows: the one before the previous is needed for transpositions.
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}

// keyElsewhere lists the sections of the config where a key of this name
// is allowed ("admission.max_wait", "models[].max_wait"), for a key
// written in the wrong place; at most a few, the least nested first.
func keyElsewhere(root reflect.Type, key string) []string {
	var out []string
	var walk func(t reflect.Type, path string, depth int)
	walk = func(t reflect.Type, path string, depth int) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
			if t.Kind() != reflect.Pointer {
				path += "[]"
			}
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || depth > 8 || reflect.PointerTo(t).Implements(textUnmarshaler) {
			return
		}
		for name, ft := range yamlFields(t) {
			sub := joinKey(path, name)
			if name == key {
				out = append(out, sub)
			}
			walk(ft, sub, depth+1)
		}
	}
	walk(root, "", 0)
	depth := func(p string) int { return strings.Count(p, ".") + strings.Count(p, "[]") }
	slices.SortFunc(out, func(a, b string) int { return cmp.Or(cmp.Compare(depth(a), depth(b)), strings.Compare(a, b)) })
	return out[:min(len(out), 3)]
}
