package config

import "strings"

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
		if d := editDistance(lower, a); d < bestDist {
			best, bestDist = a, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance (Levenshtein plus
// transposition of two adjacent letters, the commonest typo) between a
// and b, by runes.
func editDistance(a, b string) int {
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
