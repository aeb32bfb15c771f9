package config

import (
	"regexp"
	"strings"
	"testing"
)

// The meaning column of docs/CONFIG.md: the comment on each key in
// examples/sluice.yaml (reference_test.go builds the rest).

// exampleLine finds a key path's line in examples/sluice.yaml (set or
// commented out, each part after its parent's line within the top-level
// section); -1 when the example does not write it.
func exampleLine(lines []string, path string) int {
	parts := strings.Split(strings.ReplaceAll(path, "[]", ""), ".")
	at, end := -1, len(lines)
	topRe := regexp.MustCompile(`^(?:#\s?)?([a-z_]+):(?:\s|$)`)
	for i, l := range lines {
		if m := topRe.FindStringSubmatch(l); m != nil && m[1] == parts[0] && !strings.HasPrefix(l, "# ") {
			at = i
			break
		}
	}
	if at < 0 {
		return -1
	}
	for i := at + 1; i < len(lines); i++ {
		if m := topRe.FindStringSubmatch(lines[i]); m != nil && !strings.HasPrefix(lines[i], "# ") {
			end = i
			break
		}
	}
	for k, part := range parts[1:] {
		re := regexp.MustCompile(`(?:^|[\s{,#-])` + part + `:(?:\s|$)`)
		found, from, to := -1, at, end
		if k > 0 { // within the parent: its flow mapping, else the lines indented under it
			pl := lines[at]
			if strings.Contains(pl[strings.Index(pl, parts[k]+":"):], "{") {
				to = at + 1
			} else {
				from = at + 1
				for to = from; to < end; to++ {
					l := lines[to]
					if anyKey.MatchString(l) && keyIndent(l) <= keyIndent(pl) {
						break
					}
				}
			}
		}
		for i := from; i < to; i++ {
			if re.MatchString(lines[i]) {
				found = i
				break
			}
		}
		if found < 0 {
			return -1
		}
		at = found
	}
	return at
}

// exampleMeaning returns the first sentence of the comment on a key
// path's line in examples/sluice.yaml (exampleLine): the one on the line
// and its aligned continuation lines, else the block just above.
// grouped says the comment is a block above a group of keys rather than
// this key's own (a field's Go comment, where there is one, is preferred).
func exampleMeaning(lines []string, path string) (meaning string, grouped bool) {
	at := exampleLine(lines, path)
	if at < 0 {
		return "", false
	}
	parts := strings.Split(strings.ReplaceAll(path, "[]", ""), ".")
	// A key inside a flow mapping ("redis: {addrs: [...], timeout: 100ms}
	// # text") shares the line's comment, written for the line or one of
	// its keys: it is no key's own, so it gives none (the Go comment or
	// referenceMeanings does).
	last := parts[len(parts)-1]
	if l := lines[at]; flowOpen.MatchString(l[:strings.Index(l, last+":")]) {
		return "", true
	}
	text, grouped := commentFor(lines, at)
	return firstSentence(text), grouped
}

func commentFor(lines []string, at int) (string, bool) {
	line := lines[at]
	body := strings.TrimLeft(line, " #") // a commented-out key: its comment follows another #
	col := -1
	var text []string
	if i := strings.Index(body, " # "); i >= 0 && !strings.HasPrefix(body, "#") {
		col = len(line) - len(body) + i + 1
		text = append(text, strings.TrimSpace(body[i+3:]))
	} else if at+1 < len(lines) {
		col = nestedComment(lines[at+1]) // the comment starts on the next line
	}
	if col >= 0 {
		for _, l := range lines[at+1:] {
			if nestedComment(l) != col && !(len(l) > col && l[col] == '#' && strings.TrimSpace(l[:col]) == "") ||
				keyComment.MatchString("#"+strings.TrimLeft(l[col+1:], " #")) {
				break
			}
			text = append(text, strings.TrimSpace(l[col+1:]))
		}
		if len(text) > 0 {
			return strings.Join(text, " "), false
		}
	}
	indent := len(line) - len(strings.TrimLeft(line, " "))
	i := at - 1
	// A group of keys under one comment block: bare sibling lines above
	// (same indentation, no comment of their own) are stepped over.
	skipped := i
	for ; i >= 0 && bareKey.MatchString(strings.TrimSpace(line)) &&
		len(lines[i])-len(strings.TrimLeft(lines[i], " ")) == indent &&
		bareKey.MatchString(strings.TrimSpace(lines[i])); i-- {
	}
	for ; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		// Prose above a key starts at its column; a deeper # continues
		// the comment of the key before.
		if !strings.HasPrefix(l, "#") || keyComment.MatchString(l) || nestedComment(lines[i]) >= 0 ||
			strings.Index(lines[i], "#") != indent {
			break
		}
		text = append([]string{strings.TrimSpace(strings.TrimPrefix(l, "#"))}, text...)
	}
	return strings.Join(text, " "), i+len(text) < skipped
}

// flowOpen is the start of a flow mapping (not a ${NAME} reference).
var flowOpen = regexp.MustCompile(`:\s*\{`)

// anyKey is a key line, set or commented out.
var anyKey = regexp.MustCompile(`^[\s#]*-?\s*[a-z_]+:(?:\s|$)`)

// keyIndent is the column a line's key starts at, past "#" and "- ".
func keyIndent(l string) int { return len(l) - len(strings.TrimLeft(l, " #-")) }

// nestedComment is the column of the second # of a line "#   # text" (a
// comment inside a commented-out block), -1 for any other line.
func nestedComment(l string) int {
	t := strings.TrimLeft(l, " ")
	if !strings.HasPrefix(t, "#") {
		return -1
	}
	rest := strings.TrimLeft(t[1:], " ")
	if !strings.HasPrefix(rest, "#") {
		return -1
	}
	return len(l) - len(rest)
}

// bareKey is a key line with a value and no comment.
var bareKey = regexp.MustCompile(`^-?\s*[a-z_]+:\s*[^#\s][^#]*$`)

// keyComment is a commented-out key line, which ends a comment block.
var keyComment = regexp.MustCompile(`^#\s*-?\s*[a-z_]+:(?:\s|$)`)

// firstSentence cuts at the first ". " (or keeps it all), bounded.
func firstSentence(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	for from := 0; ; {
		i := strings.Index(s[from:], ". ")
		if i < 0 {
			break
		}
		i += from
		if w := s[strings.LastIndex(s[:i], " ")+1 : i]; w == "e.g" || w == "i.e" || w == "etc" || w == "vs" {
			from = i + 2 // an abbreviation, not a sentence's end
			continue
		}
		s = s[:i+1]
		break
	}
	if len(s) > 240 {
		cut := strings.LastIndex(s[:240], " ")
		s = s[:cut] + " …"
	}
	return s
}

// A key inside a flow mapping gets no meaning from the line's comment,
// which is written for the line (or one of its keys), not for it; a
// ${NAME} reference is not a flow mapping.
func TestExampleMeaningFlowMapping(t *testing.T) {
	lines := strings.Split(`rate_limits:
  # redis: {addrs: [a], failure_mode: open, timeout: 100ms}
  #                           # failure_mode open: fall back to a local limiter
cache:
  redis:
    # username: ""; password: ${P}; db: 0   # as in rate_limits.redis
`, "\n")
	for _, p := range []string{"rate_limits.redis.addrs", "rate_limits.redis.timeout", "rate_limits.redis.failure_mode"} {
		if m, _ := exampleMeaning(lines, p); m != "" {
			t.Errorf("%s: meaning %q, want none (the comment is the line's)", p, m)
		}
	}
	if m, _ := exampleMeaning(lines, "cache.redis.db"); m != "as in rate_limits.redis" {
		t.Errorf("cache.redis.db: meaning %q", m)
	}
}
