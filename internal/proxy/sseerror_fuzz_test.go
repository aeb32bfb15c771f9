package proxy

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzSSEError: whatever a backend's error body, sseError returns nil or
// a JSON object whose "error" is an object with a string "message", made
// of the body's own bytes (each of its lines is in the body); and a body
// that is such an object framed as an event, with any of the SSE line
// ends, a comment, an event name or [DONE] after it, gives that object
// back byte for byte.
func FuzzSSEError(f *testing.F) {
	f.Add([]byte("data: {\"error\":{\"message\":\"too long\",\"type\":\"BadRequestError\",\"param\":null,\"code\":400}}\n\ndata: [DONE]\n\n"), "m", uint8(0))
	f.Add([]byte("event: error\r\ndata: {\"error\":\r\ndata: {\"message\":\"x\"}}\r\n\r\n"), "", uint8(1))
	f.Add([]byte(": ping\rdata: {\"error\":{\"message\":null}}\r\r"), "\x00\"\\", uint8(2))
	f.Add([]byte("data: {\"choices\":[]}\n\ndata: {\"error\":{\"message\":\"late\"}}\n\n"), "\u2028", uint8(3))
	f.Add([]byte("data: {\"error\":\"flat\"}\n\n"), "", uint8(4))
	f.Add([]byte("<html>502</html>"), "", uint8(5))
	f.Fuzz(func(t *testing.T, body []byte, msg string, frame uint8) {
		if e := sseError(body); e != nil {
			var top struct {
				Error *struct {
					Message *string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(e, &top); err != nil || top.Error == nil || top.Error.Message == nil {
				t.Fatalf("sseError(%q) = %q: not an OpenAI error object (%v)", body, e, err)
			}
			for _, l := range bytes.Split(e, []byte("\n")) {
				if !bytes.Contains(body, l) {
					t.Fatalf("sseError(%q) = %q: line %q is not the body's", body, e, l)
				}
			}
		}
		obj, err := json.Marshal(map[string]any{"error": map[string]any{"message": msg, "type": "BadRequestError", "code": 400}})
		if err != nil {
			t.Fatal(err)
		}
		ends := []string{"\n", "\r\n", "\r"}
		end := ends[int(frame)%len(ends)]
		framed := "data: " + string(obj) + end
		if frame&4 != 0 {
			framed = ": keep-alive" + end + "event: error" + end + framed
		}
		framed += end
		if frame&8 != 0 {
			framed += "data: [DONE]" + end + end
		}
		if got := sseError([]byte(framed)); !bytes.Equal(got, obj) {
			t.Fatalf("sseError(%q) = %q, want %q", framed, got, obj)
		}
	})
}
