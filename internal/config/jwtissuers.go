package config

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"
)

// maxJWTIssuers bounds auth.jwt.issuers: each entry with a jwks_url owns
// a refresh goroutine and a connection to its provider.
const maxJWTIssuers = 16

// jwtIssuerName is an issuer's short name: it sits between two colons in
// tenant names ("jwt:<name>:<claim>"), so it has none itself, and it
// appears in logs, metrics and /readyz.
var jwtIssuerName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,32}$`)

// jwtIssuerOnly are the keys that say who an issuer is and how its tokens
// are signed: in the list form each entry has its own, never auth.jwt's
// (inherited, one provider's keys would verify another's tokens).
var jwtIssuerOnly = []string{"jwks_url", "public_keys", "hmac_secret", "issuer", "audience"}

func (c *Config) validateJWTIssuers(bad badFunc) {
	j := c.Auth.JWT
	top := reflect.ValueOf(j.JWTIssuer)
	for _, k := range jwtIssuerOnly {
		if !fieldByYAMLName(top, k).IsZero() {
			bad("auth.jwt."+k, "must not be set with auth.jwt.issuers: write it in each entry (one form or the other)")
		}
	}
	if len(j.Issuers) > maxJWTIssuers {
		bad("auth.jwt.issuers", "at most %d issuers, got %d", maxJWTIssuers, len(j.Issuers))
	}
	names := map[string]int{}
	issuers := map[string]int{}
	for i, e := range j.Issuers {
		p := fmt.Sprintf("auth.jwt.issuers[%d].", i)
		switch {
		case e.Name == "" && len(j.Issuers) > 1:
			bad(p+"name", `must name the issuer (letters, digits, ".", "_", "-"; at most 32): with several issuers a token's tenant is "jwt:<name>:<claim>"`)
		case e.Name != "" && !jwtIssuerName.MatchString(e.Name):
			bad(p+"name", `must be letters, digits, ".", "_" or "-", at most 32 (no ":": it ends the name in "jwt:<name>:<claim>"), got %q`, e.Name)
		case e.Name != "":
			if first, dup := names[e.Name]; dup {
				bad(p+"name", "repeats auth.jwt.issuers[%d].name %q: two issuers would share tenants", first, e.Name)
			} else {
				names[e.Name] = i
			}
		}
		if e.Issuer != "" {
			if first, dup := issuers[e.Issuer]; dup {
				bad(p+"issuer", "repeats auth.jwt.issuers[%d].issuer: a token's iss picks its issuer, so each names a different one", first)
			} else {
				issuers[e.Issuer] = i
			}
		}
		validateJWTIssuer(e.JWTIssuer, p, bad)
	}
}

// inheritJWT gives each auth.jwt.issuers entry auth.jwt's value of every
// key the entry does not write (set reports whether the file writes a
// key path): the refresh intervals, leeway, algorithms, claims and
// shared_tenants are written once for all. Keys of jwtIssuerOnly are never
// inherited (validation refuses them at the top with a list).
func (j *JWT) inheritJWT(set func(key string) bool) {
	top := reflect.ValueOf(j.JWTIssuer)
	for i := range j.Issuers {
		inherit(reflect.ValueOf(&j.Issuers[i].JWTIssuer).Elem(), top, fmt.Sprintf("auth.jwt.issuers[%d]", i), set, true)
	}
}

// inherit copies from's fields into the fields of to whose key under path
// the file does not write; a section (claims) field by field.
func inherit(to, from reflect.Value, path string, set func(string) bool, topLevel bool) {
	t := to.Type()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if topLevel && isIssuerOnly(name) {
			continue
		}
		key := path + "." + name
		switch {
		case t.Field(i).Type.Kind() == reflect.Struct && set(key):
			inherit(to.Field(i), from.Field(i), key, set, false)
		case !set(key):
			to.Field(i).Set(from.Field(i))
		}
	}
}

func isIssuerOnly(name string) bool {
	for _, k := range jwtIssuerOnly {
		if k == name {
			return true
		}
	}
	return false
}

// fieldByYAMLName is v's field whose yaml key is name.
func fieldByYAMLName(v reflect.Value, name string) reflect.Value {
	t := v.Type()
	for i := range t.NumField() {
		if n, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); n == name {
			return v.Field(i)
		}
	}
	panic("config: no field " + name)
}
