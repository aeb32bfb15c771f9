package jobs

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
)

// FuzzReadClaim drives readClaim, the reader of the heartbeat and
// sweep-lease records in the jobs bucket, with any stored bytes, and
// fileClaim.lapsed on what it reads. Properties: no panic; what the
// writers store (json.Marshal of a fileClaim) reads back unchanged; a
// claim is lapsed at and after its until_ms, and when it ends more than
// two leases ahead (its own lease_ms, else the reader's), and one made
// over the network is held between; a claim made through another run of
// the embedded server is lapsed, one through this run is not.
func FuzzReadClaim(f *testing.F) {
	f.Add([]byte(`{"owner":"gw-1a2b","until_ms":1765000000000}`), "gw-1a2b", int64(1765000000000), "")
	f.Add([]byte(`{"owner":"w","until_ms":1765000000000,"via_embedded":"NBX4"}`), "w", int64(-1), "NBX4")
	f.Add([]byte(`{"owner":"w","until_ms":1e300}`), "", int64(0), "")
	f.Add([]byte(`null`), "x", int64(1<<62), "y")
	f.Add([]byte(`{"owner":7}`), "\xff", int64(5), "\x00")
	f.Add([]byte(`{"owner":"w","until_ms":1796536000000,"lease_ms":30000}`), "w", int64(1765000060001), "")
	f.Fuzz(func(t *testing.T, stored []byte, owner string, until int64, via string) {
		now := time.UnixMilli(1765000000000)
		const lease = 30 * time.Second
		timeUp := func(c fileClaim) bool {
			l := lease.Milliseconds()
			if c.Lease > 0 && c.Lease <= maxClaimLease.Milliseconds() {
				l = c.Lease
			}
			return now.UnixMilli() >= c.Until || c.Until > now.UnixMilli()+2*l
		}
		if c, ok := readClaim(stored); ok {
			if c.lapsed(now, lease, func() string { return "" }) != timeUp(c) {
				t.Fatalf("%q: a claim over the network lapses by its time only", stored)
			}
		}
		if !utf8.ValidString(owner) || !utf8.ValidString(via) {
			return // json.Marshal writes U+FFFD for them: not what a writer stores
		}
		want := fileClaim{Owner: owner, Until: until, Via: via}
		b, err := json.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := readClaim(b)
		if !ok || got != want {
			t.Fatalf("%s read back as %+v, %v; want %+v", b, got, ok, want)
		}
		byTime := timeUp(got)
		if got.lapsed(now, lease, func() string { return "other-run" }) != (byTime || via != "" && via != "other-run") {
			t.Fatalf("%+v: lapsed wrong for another run of the embedded server", got)
		}
		if got.lapsed(now, lease, func() string { return via }) != byTime {
			t.Fatalf("%+v: lapsed wrong on the run it was made through", got)
		}
	})
}

// FuzzFileFromInfo drives fileFromInfo with object infos as the object
// store keeps them (JSON on its meta subject, read back by nats.go).
// Properties: no panic; no bytes negative; created_at and expires_at read
// as stored when they are numbers, else 0; a file written by PutFile
// (fileMeta, the size the server counted) reads back unchanged.
func FuzzFileFromInfo(f *testing.F) {
	f.Add([]byte(`{"name":"file-0123456789ab","size":1024,"metadata":{"tenant":"acme","purpose":"batch","filename":"in.jsonl","created_at":"1765000000","expires_at":"1767592000"}}`),
		"file-0123456789ab", int64(1024), int64(1765000000), int64(0), "in.jsonl", "batch_output")
	f.Add([]byte(`{"name":"f","size":18446744073709551615,"metadata":{"created_at":"-5","expires_at":"1e9"}}`),
		"f", int64(0), int64(-1), int64(1<<62), "", "")
	f.Add([]byte(`{"metadata":null}`), "", int64(1<<40), int64(1), int64(2), "a\nb", "batch")
	f.Fuzz(func(t *testing.T, stored []byte, id string, size, created, expires int64, filename, purpose string) {
		var info jetstream.ObjectInfo
		if json.Unmarshal(stored, &info) == nil {
			got := fileFromInfo(&info)
			if got.Bytes < 0 {
				t.Fatalf("%s: bytes %d", stored, got.Bytes)
			}
			if got.Object != "file" || got.Status != "processed" || got.ID != info.Name {
				t.Fatalf("%s: read as %+v", stored, got)
			}
		}
		if size < 0 || !utf8.ValidString(id) || !utf8.ValidString(filename) || !utf8.ValidString(purpose) {
			return
		}
		want := File{ID: id, Object: "file", Bytes: size, CreatedAt: created, ExpiresAt: expires,
			Filename: filename, Purpose: purpose, Status: "processed", Tenant: "t"}
		b, err := json.Marshal(jetstream.ObjectInfo{ObjectMeta: fileMeta(&want, "batch_1"), Size: uint64(size)})
		if err != nil {
			t.Fatal(err)
		}
		var back jetstream.ObjectInfo
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if got := fileFromInfo(&back); *got != want {
			t.Fatalf("%+v stored as %s read back as %+v", want, b, *got)
		}
	})
}

// An object info whose size is past int64 (none a server keeps; an
// answer read wrong) is not a file of negative bytes: the old read
// converted the uint64 as it was, and GET /v1/files showed -1.
func TestFileOfImpossibleSizeIsNotNegative(t *testing.T) {
	if f := fileFromInfo(&jetstream.ObjectInfo{ObjectMeta: jetstream.ObjectMeta{Name: "file-x"}, Size: 1<<64 - 1}); f.Bytes < 0 {
		t.Fatalf("bytes %d", f.Bytes)
	}
}

// answerWith serves every request with one status and body.
type answerWith struct {
	status int
	body   []byte
}

func (a answerWith) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: a.status, Body: io.NopCloser(strings.NewReader(string(a.body))),
		Header: http.Header{}, Request: r}, nil
}

// FuzzAskQueueURL drives AskQueueURL, `sluice worker`'s reading of GET
// /worker/v1/queue, with any status and body. Properties: no panic; a
// URL only from a 200 whose body names one; the gateway's own answer
// ({"nats_url": u}) gives u exactly; an error's text bounded, without Go's
// words (a type or decoder message).
func FuzzAskQueueURL(f *testing.F) {
	f.Add(200, []byte(`{"nats_url":"nats://127.0.0.1:4222"}`), "nats://u:p@10.0.0.1:4222,nats://10.0.0.2:4222")
	f.Add(200, []byte(`{"nats_url":7}`), "")
	f.Add(200, []byte(`{"nats_url":""}`), "nats://a")
	f.Add(401, []byte(`{"error":{"message":"bad token"}}`), "x")
	f.Add(404, []byte(``), "x")
	f.Add(500, []byte(`<html>`), "x")
	const admin = "http://127.0.0.1:9"
	f.Fuzz(func(t *testing.T, status int, body []byte, url string) {
		if status < 100 || status > 999 {
			status = 200
		}
		got, err := AskQueueURL(context.Background(), admin, "tok", &http.Client{Transport: answerWith{status, body}})
		if err != nil {
			msg := err.Error()
			if got != "" || len(msg) > 400 {
				t.Fatalf("status %d %q: %q with error %q", status, body, got, msg)
			}
			for _, w := range []string{"json", "unmarshal", "Go value", "struct", "invalid character"} {
				if strings.Contains(msg, w) {
					t.Fatalf("status %d %q: error %q says %q", status, body, msg, w)
				}
			}
		} else if status != 200 || got == "" {
			t.Fatalf("status %d %q: URL %q", status, body, got)
		}
		if url == "" || !utf8.ValidString(url) {
			return
		}
		b, _ := json.Marshal(map[string]string{"nats_url": url})
		got, err = AskQueueURL(context.Background(), admin, "", &http.Client{Transport: answerWith{200, b}})
		if len(b) <= maxQueueInfo && (err != nil || got != url) {
			t.Fatalf("%s read as %q, %v", b, got, err)
		}
	})
}
