package h1client

// Character classes of RFC 9110 §5.6, checked byte by byte.

// tchar: the characters of a token (method, field name): ALPHA, DIGIT and
// !#$%&'*+-.^_`|~. tcharTable is indexed by the byte ('1': a tchar), one
// load per byte of every header name sent and read instead of a chain of
// comparisons; a constant, so the index needs no bounds check.
const tcharTable = "" +
	"................................" +
	".1.11111..11.11.1111111111......" +
	".11111111111111111111111111...11" +
	"111111111111111111111111111.1.1." +
	"................................" +
	"................................" +
	"................................" +
	"................................"

func isTchar(c byte) bool { return tcharTable[c] == '1' }

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTchar(s[i]) {
			return false
		}
	}
	return true
}

// canonicalToken is validToken that also reports whether s is already in
// canonical MIME form (textproto.CanonicalMIMEHeaderKey would return it
// as is: each letter upper case at the start and after a '-', lower case
// elsewhere), in the same pass: a field name read is checked and, as a
// backend's usually are, found canonical without the second walk.
func canonicalToken(s string) (token, canonical bool) {
	if s == "" {
		return false, false
	}
	canonical = true
	upper := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isTchar(c) {
			return false, false
		}
		// A letter (c|0x20 folds it to lower case) must be upper case
		// (0x20 clear) exactly where upper says.
		if (c|0x20)-'a' < 26 && (c&0x20 == 0) != upper {
			canonical = false
		}
		upper = c == '-'
	}
	return true, canonical
}

// validValue: a field value has no control characters but HTAB (obs-text,
// bytes >= 0x80, is allowed).
func validValue[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// validHost: a Host header of printable ASCII without spaces.
func validHost(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}
