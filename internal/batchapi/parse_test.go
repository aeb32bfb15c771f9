package batchapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/jobs"
)

func chatLine(id, model string) string {
	return fmt.Sprintf(`{"custom_id":%q,"method":"POST","url":"/v1/chat/completions","body":{"model":%q,"messages":[{"role":"user","content":"hi"}]}}`, id, model)
}

var testParseOpts = ParseOptions{
	Endpoints: []string{"/v1/chat/completions", "/v1/embeddings"},
	Models:    func(m string) bool { return m == "m1" || m == "m2" },
}

func TestParseBatchInputValid(t *testing.T) {
	in := chatLine("a", "m1") + "\r\n\n  \n" +
		`{"custom_id":"b","method":"POST","url":"/v1/embeddings","body":{"model":"m1","input":"x"}}` // no final newline
	reqs, lineErrs, err := ParseBatchInput(strings.NewReader(in), testParseOpts)
	if err != nil || lineErrs != nil {
		t.Fatalf("err=%v lineErrs=%+v", err, lineErrs)
	}
	if len(reqs) != 2 {
		t.Fatalf("got %d requests, want 2", len(reqs))
	}
	if r := reqs[0]; r.CustomID != "a" || r.Method != "POST" || r.URL != "/v1/chat/completions" || r.Model != "m1" ||
		!strings.HasPrefix(string(r.Body), `{"model":"m1"`) {
		t.Errorf("first request = %+v", r)
	}
	if r := reqs[1]; r.CustomID != "b" || r.URL != "/v1/embeddings" || string(r.Body) != `{"model":"m1","input":"x"}` {
		t.Errorf("second request = %+v body %s", r, r.Body)
	}
}

// A byte order mark before the first line (as Windows editors save UTF-8)
// is not content; one anywhere else is, and that line is refused.
func TestParseBatchInputByteOrderMark(t *testing.T) {
	reqs, lineErrs, err := ParseBatchInput(strings.NewReader("\xef\xbb\xbf"+chatLine("a", "m1")+"\n"+chatLine("b", "m1")), testParseOpts)
	if err != nil || lineErrs != nil || len(reqs) != 2 || reqs[0].CustomID != "a" {
		t.Fatalf("a file starting with a BOM: err=%v lineErrs=%+v reqs=%+v", err, lineErrs, reqs)
	}
	_, lineErrs, err = ParseBatchInput(strings.NewReader(chatLine("a", "m1")+"\n\xef\xbb\xbf"+chatLine("b", "m2")), testParseOpts)
	if err != nil || len(lineErrs) != 1 || lineErrs[0].Line != 2 || lineErrs[0].Code != CodeInvalidJSON {
		t.Fatalf("a BOM on line 2: err=%v lineErrs=%+v, want one invalid_json error on line 2", err, lineErrs)
	}
}

func TestParseBatchInputLineErrors(t *testing.T) {
	cases := []struct {
		name, line, code, param string
	}{
		{"not json", `{"custom_id":`, CodeInvalidJSON, ""},
		{"array", `[1,2]`, CodeInvalidJSON, ""},
		{"null", `null`, CodeInvalidJSON, ""},
		{"no custom_id", `{"method":"POST","url":"/v1/embeddings","body":{"model":"m1"}}`, CodeInvalidCustomID, "custom_id"},
		{"numeric custom_id", `{"custom_id":7,"method":"POST","url":"/v1/embeddings","body":{"model":"m1"}}`, CodeInvalidCustomID, "custom_id"},
		{"empty custom_id", `{"custom_id":"","method":"POST","url":"/v1/embeddings","body":{"model":"m1"}}`, CodeInvalidCustomID, "custom_id"},
		{"GET", `{"custom_id":"x","method":"GET","url":"/v1/embeddings","body":{"model":"m1"}}`, CodeInvalidMethod, "method"},
		{"lowercase post", `{"custom_id":"x","method":"post","url":"/v1/embeddings","body":{"model":"m1"}}`, CodeInvalidMethod, "method"},
		{"unknown url", `{"custom_id":"x","method":"POST","url":"/v1/completions","body":{"model":"m1"}}`, CodeInvalidURL, "url"},
		{"body string", `{"custom_id":"x","method":"POST","url":"/v1/embeddings","body":"{}"}`, CodeInvalidBody, "body"},
		{"no body", `{"custom_id":"x","method":"POST","url":"/v1/embeddings"}`, CodeInvalidBody, "body"},
		{"no model", `{"custom_id":"x","method":"POST","url":"/v1/embeddings","body":{"input":"a"}}`, CodeInvalidBody, "body.model"},
		{"model number", `{"custom_id":"x","method":"POST","url":"/v1/embeddings","body":{"model":3}}`, CodeInvalidBody, "body.model"},
		{"streamed", `{"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":{"model":"m1","messages":[{"role":"user","content":"hi"}],"stream":true}}`, CodeInvalidBody, "body.stream"},
		{"unserved model", `{"custom_id":"x","method":"POST","url":"/v1/embeddings","body":{"model":"gpt-9"}}`, CodeModelNotFound, "body.model"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := chatLine("first", "m1") + "\n" + tc.line + "\n"
			reqs, lineErrs, err := ParseBatchInput(strings.NewReader(in), testParseOpts)
			if err != nil {
				t.Fatal(err)
			}
			if reqs != nil {
				t.Errorf("requests returned despite errors: %+v", reqs)
			}
			if len(lineErrs) != 1 {
				t.Fatalf("lineErrs = %+v, want one", lineErrs)
			}
			if e := lineErrs[0]; e.Line != 2 || e.Code != tc.code || e.Param != tc.param || e.Message == "" {
				t.Errorf("error = %+v, want line 2 code %s param %q", e, tc.code, tc.param)
			}
		})
	}
}

func TestParseBatchInputDuplicateCustomID(t *testing.T) {
	in := chatLine("a", "m1") + "\n" + chatLine("b", "m1") + "\n" + chatLine("a", "m2") + "\n"
	_, lineErrs, _ := ParseBatchInput(strings.NewReader(in), testParseOpts)
	if len(lineErrs) != 1 || lineErrs[0].Code != CodeDuplicateID || lineErrs[0].Line != 3 ||
		!strings.Contains(lineErrs[0].Message, "line 1") {
		t.Fatalf("lineErrs = %+v", lineErrs)
	}
}

func TestParseBatchInputEmpty(t *testing.T) {
	for _, in := range []string{"", "\n\n", " \r\n\t\n"} {
		reqs, lineErrs, err := ParseBatchInput(strings.NewReader(in), testParseOpts)
		if err != nil || reqs != nil || len(lineErrs) != 1 || lineErrs[0].Code != CodeEmptyFile {
			t.Errorf("%q: reqs=%v lineErrs=%+v err=%v", in, reqs, lineErrs, err)
		}
	}
}

func TestParseBatchInputLineLength(t *testing.T) {
	// A line far beyond bufio.Scanner's 64 KiB default is accepted.
	big := chatLine("big", "m1")
	big = strings.Replace(big, `"hi"`, `"`+strings.Repeat("x", 1<<20)+`"`, 1)
	reqs, lineErrs, err := ParseBatchInput(strings.NewReader(big+"\n"+chatLine("s", "m1")), testParseOpts)
	if err != nil || lineErrs != nil || len(reqs) != 2 {
		t.Fatalf("1 MiB line: reqs=%d lineErrs=%+v err=%v", len(reqs), lineErrs, err)
	}

	line := chatLine("a", "m1")
	o := testParseOpts
	o.MaxLineBytes = len(line)
	for _, in := range []string{line, line + "\n", line + "\r\n"} {
		if _, lineErrs, _ := ParseBatchInput(strings.NewReader(in), o); lineErrs != nil {
			t.Errorf("line of exactly MaxLineBytes %q: %+v", in[len(in)-3:], lineErrs)
		}
	}
	o.MaxLineBytes = len(line) - 1
	in := line + "\n" + line[:len(line)-2] + "\n" + line // second is short but invalid JSON
	_, lineErrs, _ = ParseBatchInput(strings.NewReader(in), o)
	if len(lineErrs) != 3 || lineErrs[0].Code != CodeLineTooLong || lineErrs[0].Line != 1 ||
		lineErrs[1].Code != CodeInvalidJSON || lineErrs[1].Line != 2 ||
		lineErrs[2].Code != CodeLineTooLong || lineErrs[2].Line != 3 {
		t.Fatalf("lineErrs = %+v", lineErrs)
	}
}

func TestParseBatchInputMaxRequests(t *testing.T) {
	var sb strings.Builder
	for i := range 5 {
		sb.WriteString(chatLine(fmt.Sprint(i), "m1") + "\n")
	}
	o := testParseOpts
	o.MaxRequests = 5
	if reqs, lineErrs, _ := ParseBatchInput(strings.NewReader(sb.String()), o); len(reqs) != 5 || lineErrs != nil {
		t.Fatalf("at the cap: %d requests, %+v", len(reqs), lineErrs)
	}
	o.MaxRequests = 3
	reqs, lineErrs, _ := ParseBatchInput(strings.NewReader(sb.String()), o)
	if reqs != nil || len(lineErrs) != 1 || lineErrs[0].Code != CodeTooManyRequests || lineErrs[0].Line != 4 {
		t.Fatalf("over the cap: reqs=%d lineErrs=%+v", len(reqs), lineErrs)
	}
}

func TestParseBatchInputMaxErrors(t *testing.T) {
	in := strings.Repeat("nope\n", 10)
	o := testParseOpts
	o.MaxErrors = 4
	_, lineErrs, _ := ParseBatchInput(strings.NewReader(in), o)
	if len(lineErrs) != 5 || lineErrs[3].Line != 4 || !strings.Contains(lineErrs[4].Message, "6 more") {
		t.Fatalf("lineErrs = %+v", lineErrs)
	}
}

func TestParseBatchInputValidateOnly(t *testing.T) {
	o := testParseOpts
	o.ValidateOnly = true
	reqs, lineErrs, err := ParseBatchInput(strings.NewReader(chatLine("a", "m1")), o)
	if reqs != nil || lineErrs != nil || err != nil {
		t.Fatalf("reqs=%v lineErrs=%v err=%v", reqs, lineErrs, err)
	}
}

var errBroken = errors.New("broken reader")

func TestParseBatchInputReadError(t *testing.T) {
	r := io.MultiReader(strings.NewReader(chatLine("a", "m1")+"\n"), iotestErrReader{errBroken})
	_, _, err := ParseBatchInput(r, testParseOpts)
	if !errors.Is(err, errBroken) || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("err = %v", err)
	}
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

// FuzzParseBatchInput: arbitrary bytes never panic the parser, and what it
// accepts satisfies what the queue relies on.
func FuzzParseBatchInput(f *testing.F) {
	f.Add([]byte(chatLine("a", "m1") + "\n" + chatLine("b", "m2") + "\n"))
	f.Add([]byte(chatLine("a", "m1") + "\n" + chatLine("a", "m1")))
	f.Add([]byte(`{"custom_id":"x","method":"POST","url":"/v1/embeddings","body":{"model":"m1","input":[1,2]}}` + "\r\n"))
	f.Add([]byte(`{"custom_id":"x","method":"POST","url":"/v1/embeddings","body":null}`))
	f.Add([]byte(`{"custom_id":"x","custom_id":"y","method":"POST","url":"/v1/embeddings","body":{"model":"m1"},"body":{}}`))
	f.Add([]byte("\n\n\xff\xfe{\n[]\nnull\n"))
	f.Add([]byte(strings.Repeat("x", 300) + "\n" + chatLine("z", "m1")))
	o := testParseOpts
	o.MaxLineBytes = 256
	o.MaxRequests = 20
	o.MaxErrors = 5
	f.Fuzz(func(t *testing.T, data []byte) {
		reqs, lineErrs, err := ParseBatchInput(bytes.NewReader(data), o)
		if err != nil {
			t.Fatalf("error from an in-memory reader: %v", err)
		}
		lines := bytes.Count(data, []byte("\n")) + 1
		if lineErrs != nil {
			if reqs != nil {
				t.Fatal("requests returned along with line errors")
			}
			if len(lineErrs) > o.MaxErrors+1 {
				t.Fatalf("%d line errors, cap %d", len(lineErrs), o.MaxErrors)
			}
			for _, e := range lineErrs {
				if e.Code == "" || e.Message == "" || e.Line < 0 || e.Line > lines {
					t.Fatalf("bad line error %+v (%d lines)", e, lines)
				}
			}
			return
		}
		if len(reqs) == 0 || len(reqs) > o.MaxRequests {
			t.Fatalf("%d requests accepted without errors", len(reqs))
		}
		seen := map[string]bool{}
		for _, r := range reqs {
			checkAccepted(t, r, o)
			if seen[r.CustomID] {
				t.Fatalf("duplicate custom_id %q accepted", r.CustomID)
			}
			seen[r.CustomID] = true
		}
	})
}

func checkAccepted(t *testing.T, r jobs.BatchRequest, o ParseOptions) {
	t.Helper()
	if r.CustomID == "" || r.Method != "POST" || r.Model == "" || !o.Models(r.Model) {
		t.Fatalf("accepted request %+v", r)
	}
	valid := false
	for _, e := range o.Endpoints {
		valid = valid || r.URL == e
	}
	if !valid {
		t.Fatalf("accepted url %q", r.URL)
	}
	var body map[string]any
	if err := json.Unmarshal(r.Body, &body); err != nil || body == nil {
		t.Fatalf("accepted body %q is not an object: %v", r.Body, err)
	}
	if m, _ := body["model"].(string); m != r.Model {
		t.Fatalf("body model %q, request model %q", m, r.Model)
	}
}

// A /v1/responses line is read by the Responses API's rules: its own
// fields named in errors, background refused as the gateway refuses it.
func TestParseBatchInputResponsesLines(t *testing.T) {
	opts := ParseOptions{Endpoints: []string{"/v1/responses"}, Models: testParseOpts.Models}
	line := func(body string) string {
		return `{"custom_id":"x","method":"POST","url":"/v1/responses","body":` + body + `}` + "\n"
	}
	reqs, lineErrs, err := ParseBatchInput(strings.NewReader(line(`{"model":"m1","input":"hi","max_output_tokens":5}`)), opts)
	if err != nil || len(lineErrs) != 0 || len(reqs) != 1 || reqs[0].Model != "m1" {
		t.Fatalf("%+v %+v %v", reqs, lineErrs, err)
	}
	for body, param := range map[string]string{
		`{"model":"m1","input":"hi","background":true}`: "body.background",
		`{"model":"m1","input":7}`:                      "body.input",
		`{"model":"m1","max_output_tokens":"5"}`:        "body.max_output_tokens",
	} {
		_, lineErrs, _ := ParseBatchInput(strings.NewReader(line(body)), opts)
		if len(lineErrs) != 1 || lineErrs[0].Code != CodeInvalidBody || lineErrs[0].Param != param {
			t.Errorf("%s: %+v, want %s", body, lineErrs, param)
		}
	}
}

// A line that is not UTF-8 is refused on its line: decoded anyway, its
// custom_id would come back in the output with U+FFFD where the client
// sent a byte of its own (no longer matching its input), and its body
// would reach the backend as it came. Valid UTF-8 beyond ASCII is kept
// byte for byte.
func TestParseBatchInputRefusesInvalidUTF8(t *testing.T) {
	// chatLine quotes with %q, which would escape the stray bytes.
	in := chatLine("café", "m1") + "\n" +
		strings.Replace(chatLine("r?", "m1"), "?", "\xff", 1) + "\n" +
		strings.Replace(chatLine("b", "m1"), "hi", "h\xfei", 1) + "\n"
	_, lineErrs, err := ParseBatchInput(strings.NewReader(in), testParseOpts)
	if err != nil || len(lineErrs) != 2 {
		t.Fatalf("err=%v lineErrs=%+v, want an error on lines 2 and 3", err, lineErrs)
	}
	for i, e := range lineErrs {
		if e.Line != i+2 || e.Code != CodeInvalidJSON || !strings.Contains(e.Message, "UTF-8") {
			t.Errorf("line error %d = %+v, want invalid_json_line naming UTF-8 on line %d", i, e, i+2)
		}
	}
	if !strings.Contains(lineErrs[0].Message, "(byte 15)") {
		t.Errorf("line 2: %q, want the offset of the bad byte (15)", lineErrs[0].Message)
	}
	reqs, lineErrs, err := ParseBatchInput(strings.NewReader(chatLine("café", "m1")), testParseOpts)
	if err != nil || lineErrs != nil || len(reqs) != 1 || reqs[0].CustomID != "café" {
		t.Fatalf("a UTF-8 custom_id: err=%v lineErrs=%+v reqs=%+v", err, lineErrs, reqs)
	}
}

// Every request of a batch input uses one model, as OpenAI requires; the
// first line that names another is the error, with the line of the first.
func TestParseBatchInputOneModel(t *testing.T) {
	in := chatLine("a", "m1") + "\n" + chatLine("b", "m1") + "\n" + chatLine("c", "m2") + "\n"
	for _, validateOnly := range []bool{false, true} {
		o := testParseOpts
		o.ValidateOnly = validateOnly
		reqs, lineErrs, err := ParseBatchInput(strings.NewReader(in), o)
		if err != nil || reqs != nil || len(lineErrs) != 1 {
			t.Fatalf("validateOnly=%v: err=%v reqs=%d lineErrs=%+v, want one error", validateOnly, err, len(reqs), lineErrs)
		}
		e := lineErrs[0]
		if e.Code != CodeModelMismatch || e.Line != 3 || e.Param != "body.model" ||
			e.Message != `model "m2" differs from "m1" on line 1; every request of a batch must use the same model` {
			t.Errorf("validateOnly=%v: %+v", validateOnly, e)
		}
	}
}
