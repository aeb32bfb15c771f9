package bench

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Limits that keep a malformed trace from planning absurd requests.
const (
	maxTraceTokens  = 10_000_000
	maxTraceSeconds = 1e9 // ~31 years
)

// LoadTrace reads a request trace and reshapes it with opts. The format is
// detected from the file: .jsonl or .json is Mooncake JSON lines; a CSV whose
// header starts with TIMESTAMP is the Azure LLM inference trace; any other
// CSV is the generic arrival_s,input_tokens,output_tokens form. Arrival times
// are made relative to the earliest request.
func LoadTrace(path string, opts TraceOptions) ([]Arrival, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("bench: open trace: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<16)
	var arr []Arrival
	switch ext := strings.ToLower(filepath.Ext(path)); {
	case ext == ".jsonl" || ext == ".json":
		arr, err = ParseMooncakeJSONL(br)
	default:
		head, _ := br.Peek(len(utf8BOM) + len("TIMESTAMP"))
		if head = bytes.TrimPrefix(head, []byte(utf8BOM)); len(head) >= 9 && bytes.EqualFold(head[:9], []byte("TIMESTAMP")) {
			arr, err = ParseAzureCSV(br)
		} else {
			arr, err = ParseArrivalCSV(br)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("bench: trace %s: %w", path, err)
	}
	return Reshape(arr, opts), nil
}

const utf8BOM = "\ufeff"

// ParseAzureCSV reads the Azure LLM inference trace format (Splitwise, 2023):
// a header TIMESTAMP,ContextTokens,GeneratedTokens, then rows such as
// "2023-11-16 18:15:46.6805900,374,44".
func ParseAzureCSV(r io.Reader) ([]Arrival, error) {
	cr := newCSV(r)
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("azure csv header: %w", err)
	}
	if len(header) < 3 || !strings.EqualFold(strings.TrimPrefix(header[0], utf8BOM), "TIMESTAMP") {
		return nil, fmt.Errorf("azure csv: header %q does not start with TIMESTAMP", strings.Join(header, ","))
	}
	type row struct {
		t       time.Time
		in, out int
	}
	var rows []row
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("azure csv: %w", err) // a csv.ParseError names the line
		}
		line, _ := cr.FieldPos(0)
		if len(rec) < 3 {
			return nil, fmt.Errorf("azure csv line %d: want 3 fields, got %d", line, len(rec))
		}
		t, err := time.Parse("2006-01-02 15:04:05", strings.TrimSpace(rec[0]))
		if err != nil {
			return nil, fmt.Errorf("azure csv line %d: %w", line, err)
		}
		in, err1 := parseTokens(rec[1])
		out, err2 := parseTokens(rec[2])
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("azure csv line %d: %w", line, err)
		}
		rows = append(rows, row{t, in, out})
	}
	if len(rows) == 0 {
		return nil, nil
	}
	t0 := slices.MinFunc(rows, func(a, b row) int { return a.t.Compare(b.t) }).t
	arr := make([]Arrival, len(rows))
	for i, r := range rows {
		at := r.t.Sub(t0)
		if at.Seconds() > maxTraceSeconds {
			return nil, fmt.Errorf("azure csv: trace spans more than %g s", float64(maxTraceSeconds))
		}
		arr[i] = Arrival{At: at, InputTokens: r.in, OutputTokens: r.out}
	}
	sortByAt(arr)
	return arr, nil
}

// ParseMooncakeJSONL reads the Mooncake trace format (FAST 2025): one JSON
// object per line with timestamp (ms), input_length, output_length and
// hash_ids (one id per 512-token prompt block). Blank lines are skipped.
func ParseMooncakeJSONL(r io.Reader) ([]Arrival, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<16), 64<<20)
	type line struct {
		Timestamp    *float64 `json:"timestamp"`
		InputLength  *int     `json:"input_length"`
		OutputLength *int     `json:"output_length"`
		HashIDs      []int    `json:"hash_ids"`
	}
	var arr []Arrival
	var ms []float64
	for n := 1; sc.Scan(); n++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var l line
		if err := json.Unmarshal(b, &l); err != nil {
			return nil, fmt.Errorf("mooncake line %d: %w", n, err)
		}
		if l.Timestamp == nil || l.InputLength == nil || l.OutputLength == nil {
			return nil, fmt.Errorf("mooncake line %d: timestamp, input_length and output_length are required", n)
		}
		if t := *l.Timestamp; math.IsNaN(t) || math.Abs(t) > maxTraceSeconds*1000 {
			return nil, fmt.Errorf("mooncake line %d: timestamp %g out of range", n, t)
		}
		if !validTokens(*l.InputLength) || !validTokens(*l.OutputLength) {
			return nil, fmt.Errorf("mooncake line %d: token count out of range", n)
		}
		ms = append(ms, *l.Timestamp)
		arr = append(arr, Arrival{InputTokens: *l.InputLength, OutputTokens: *l.OutputLength, HashIDs: l.HashIDs})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("mooncake: %w", err)
	}
	if len(arr) == 0 {
		return nil, nil
	}
	t0 := slices.Min(ms)
	for i := range arr {
		arr[i].At = secondsToDuration((ms[i] - t0) / 1000)
	}
	sortByAt(arr)
	return arr, nil
}

// ParseArrivalCSV reads the generic trace form: rows of
// arrival_s,input_tokens,output_tokens (seconds may be fractional), with an
// optional header row. Extra columns are ignored.
func ParseArrivalCSV(r io.Reader) ([]Arrival, error) {
	cr := newCSV(r)
	var arr []Arrival
	var secs []float64
	for first := true; ; first = false {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("csv: %w", err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) < 3 {
			return nil, fmt.Errorf("csv line %d: want arrival_s,input_tokens,output_tokens, got %d fields", line, len(rec))
		}
		s, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(rec[0], utf8BOM)), 64)
		if err != nil && first {
			continue // a header row
		}
		if err != nil || math.IsNaN(s) || math.Abs(s) > maxTraceSeconds {
			return nil, fmt.Errorf("csv line %d: bad arrival_s %q", line, rec[0])
		}
		in, err1 := parseTokens(rec[1])
		out, err2 := parseTokens(rec[2])
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("csv line %d: %w", line, err)
		}
		secs = append(secs, s)
		arr = append(arr, Arrival{InputTokens: in, OutputTokens: out})
	}
	if len(arr) == 0 {
		return nil, nil
	}
	t0 := slices.Min(secs)
	for i := range arr {
		arr[i].At = secondsToDuration(secs[i] - t0)
	}
	sortByAt(arr)
	return arr, nil
}

func newCSV(r io.Reader) *csv.Reader {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1 // checked per row, with a clearer message
	cr.ReuseRecord = true
	cr.TrimLeadingSpace = true
	return cr
}

func parseTokens(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("token count: %w", err)
	}
	if !validTokens(n) {
		return 0, fmt.Errorf("token count %d out of range", n)
	}
	return n, nil
}

func validTokens(n int) bool { return n >= 0 && n <= maxTraceTokens }

func sortByAt(arr []Arrival) {
	slices.SortStableFunc(arr, func(a, b Arrival) int { return cmp.Compare(a.At, b.At) })
}
