package proxy

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// The streaming scrub finds the key however the body is cut into reads,
// and leaves every other byte as it was.
func FuzzKeyScrubber(f *testing.F) {
	f.Add("sk-KEY", "a sk-KEY b sk-Ksk-KEYY sk-KE", uint8(1))
	f.Add("aa", "aaaaa", uint8(2))
	f.Add("sk-xxxxx", "sk-xxxxxxxxxx", uint8(3))
	f.Add("sk-KEY", "data: sk-K\n\ndata: EY sk-\nKEY sk-KEY\n", uint8(1)) // nothing before a newline is held
	f.Add("a\nb", "xa\nbya\na\nb", uint8(1))                              // a key with a newline: held as before
	f.Fuzz(func(t *testing.T, key, body string, cut uint8) {
		if key == "" {
			return
		}
		var r io.Reader = strings.NewReader(body)
		switch cut % 3 {
		case 1:
			r = iotest.OneByteReader(r)
		case 2:
			r = iotest.HalfReader(r)
		}
		got, err := io.ReadAll(newKeyScrubber(r, key))
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.ReplaceAll(body, key, keyMask); string(got) != want {
			t.Fatalf("key %q in %q: got %q, want %q", key, body, got, want)
		}
	})
}

func TestKeyScrubberAcrossReads(t *testing.T) {
	key := "sk-upstream-SECRET-0123456789"
	body := strings.Repeat("x", 70<<10) + key + strings.Repeat("y", 16<<10-3) + key + "z"
	for _, r := range []io.Reader{strings.NewReader(body), iotest.OneByteReader(strings.NewReader(body)), iotest.DataErrReader(strings.NewReader(body))} {
		got, err := io.ReadAll(newKeyScrubber(r, key))
		if err != nil || bytes.Contains(got, []byte(key)) || string(got) != strings.ReplaceAll(body, key, keyMask) {
			t.Fatalf("%T: %d bytes, err %v", r, len(got), err)
		}
	}
}
