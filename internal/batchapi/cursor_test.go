package batchapi_test

import (
	"net/http"
	"strings"
	"testing"
)

// A list's after= that names nothing is a 404 whose param is the query's
// own, "after" (where the client wrote the id), not "id": the SDKs show
// param to say which argument was wrong.
func TestListCursorNamingNothingNamesAfter(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, tc := range []struct{ path, want string }{
		{"/v1/files?after=garbage",
			`{"error":{"message":"No such File object: garbage","type":"invalid_request_error","param":"after","code":null}}`},
		{"/v1/files?after=..%2Fx",
			`{"error":{"message":"No such File object: ../x","type":"invalid_request_error","param":"after","code":null}}`},
		{"/v1/batches?after=..%2Fx",
			`{"error":{"message":"No such Batch object: ../x","type":"invalid_request_error","param":"after","code":null}}`},
	} {
		r := e.get(tc.path)
		r.wantError(t, http.StatusNotFound)
		if got := strings.TrimSpace(string(r.body)); got != tc.want {
			t.Errorf("GET %s:\n got %s\nwant %s", tc.path, got, tc.want)
		}
	}
}
