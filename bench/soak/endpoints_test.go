package main

import (
	"encoding/binary"
	"strings"
	"testing"
)

func TestCheckRerank(t *testing.T) {
	docs := []string{"a b", "c d", "e f"}
	good := `{"id":"rerank-sim-1","model":"sim-model","usage":{"total_tokens":9},"results":[` +
		`{"index":2,"document":{"text":"e f"},"relevance_score":0.6},` +
		`{"index":0,"document":{"text":"a b"},"relevance_score":0.3}]}`
	if err := checkRerank([]byte(good), docs, 2); err != nil {
		t.Fatalf("a right answer: %v", err)
	}
	for name, c := range map[string]struct {
		body string
		topN int
	}{
		"all documents without top_n": {good, 0},
		"top_n over the documents":    {good, 5},
		"not best first":              {strings.Replace(good, "0.3", "0.7", 1), 2},
		"a document not its index's":  {strings.Replace(good, `"text":"a b"`, `"text":"c d"`, 1), 2},
		"an index repeated":           {strings.Replace(good, `"index":0`, `"index":2`, 1), 2},
		"an index out of range":       {strings.Replace(good, `"index":0`, `"index":3`, 1), 2},
		"a relevance of 1":            {strings.Replace(good, "0.6", "1", 1), 2},
		"no relevance":                {strings.Replace(good, `,"relevance_score":0.3`, ``, 1), 2},
		"another model":               {strings.Replace(good, `"model":"sim-model"`, `"model":"x"`, 1), 2},
		"not JSON":                    {`{"results":`, 2},
	} {
		if checkRerank([]byte(c.body), docs, c.topN) == nil {
			t.Errorf("%s: passed", name)
		}
	}
}

func TestCheckScore(t *testing.T) {
	good := `{"id":"score-sim-1","object":"list","data":[{"index":0,"object":"score","score":0.2},{"index":1,"object":"score","score":0}]}`
	if err := checkScore([]byte(good), 2); err != nil {
		t.Fatalf("a right answer: %v", err)
	}
	for name, body := range map[string]string{
		"one short":     strings.Replace(good, `,{"index":1,"object":"score","score":0}`, ``, 1),
		"out of order":  strings.Replace(good, `"index":1`, `"index":0`, 1),
		"no score":      strings.Replace(good, `,"score":0}`, `}`, 1),
		"a score of 1":  strings.Replace(good, `"score":0.2`, `"score":1`, 1),
		"not a list":    strings.Replace(good, `"object":"list"`, `"object":"score"`, 1),
		"wrong objects": strings.Replace(good, `"object":"score","score":0.2`, `"object":"embedding","score":0.2`, 1),
	} {
		if checkScore([]byte(body), 2) == nil {
			t.Errorf("%s: passed", name)
		}
	}
}

func TestCheckTokenizeAndDetokenize(t *testing.T) {
	words := []string{"the", "gateway", "sends"}
	ids, err := checkTokenize([]byte(`{"count":3,"max_model_len":65536,"tokens":[0,16,20077]}`), words)
	if err != nil || len(ids) != 3 || ids[2] != 20077 {
		t.Fatalf("a right tokenize: %v, %v", ids, err)
	}
	for name, body := range map[string]string{
		"count off":        `{"count":2,"max_model_len":65536,"tokens":[0,16,20077]}`,
		"a token short":    `{"count":3,"max_model_len":65536,"tokens":[0,16]}`,
		"no model length":  `{"count":3,"tokens":[0,16,20077]}`,
		"a negative token": `{"count":3,"max_model_len":65536,"tokens":[0,-16,20077]}`,
	} {
		if _, err := checkTokenize([]byte(body), words); err == nil {
			t.Errorf("tokenize %s: passed", name)
		}
	}
	if err := checkDetokenize([]byte(`{"prompt":"the gateway <tok20077>"}`), words, ids); err != nil {
		t.Fatalf("a right detokenize: %v", err)
	}
	if err := checkDetokenize([]byte(`{"prompt":"the gateway sends"}`), words, ids); err != nil {
		t.Fatalf("a word given back as sent: %v", err)
	}
	for name, body := range map[string]string{
		"another word":      `{"prompt":"the river <tok20077>"}`,
		"another id's word": `{"prompt":"the gateway <tok20078>"}`,
		"a word short":      `{"prompt":"the gateway"}`,
		"no prompt":         `{}`,
	} {
		if checkDetokenize([]byte(body), words, ids) == nil {
			t.Errorf("detokenize %s: passed", name)
		}
	}
}

func TestCheckModeration(t *testing.T) {
	good := `{"id":"modr-sim-1","model":"sim-model","results":[` +
		`{"flagged":false,"categories":{"hate":false,"violence":false},"category_scores":{"hate":0.01,"violence":0.5}},` +
		`{"flagged":true,"categories":{"hate":true,"violence":false},"category_scores":{"hate":0.9,"violence":0}}]}`
	if err := checkModeration([]byte(good), 2); err != nil {
		t.Fatalf("a right answer: %v", err)
	}
	for name, body := range map[string]string{
		"flag without a category": strings.Replace(good, `"flagged":false`, `"flagged":true`, 1),
		"category without a flag": strings.Replace(good, `"flagged":true`, `"flagged":false`, 1),
		"flag under its score":    strings.Replace(good, `"hate":0.9`, `"hate":0.4`, 1),
		"a category unscored":     strings.Replace(good, `"category_scores":{"hate":0.01,"violence":0.5}`, `"category_scores":{"hate":0.01,"sexual":0.5}`, 1),
		"no categories":           `{"id":"m","results":[{"flagged":false,"categories":{},"category_scores":{}},{"flagged":false,"categories":{},"category_scores":{}}]}`,
		"one result short":        `{"id":"m","results":[{"flagged":false,"categories":{"hate":false},"category_scores":{"hate":0}}]}`,
	} {
		if checkModeration([]byte(body), 2) == nil {
			t.Errorf("%s: passed", name)
		}
	}
}

func TestCheckTranscript(t *testing.T) {
	if err := checkTranscript([]byte(`{"text":"the river flows"}`), false, "transcribe"); err != nil {
		t.Fatal(err)
	}
	verbose := `{"task":"translate","language":"english","duration":0.3,"text":"the river flows"}`
	if err := checkTranscript([]byte(verbose), true, "translate"); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		body, task string
		verbose    bool
	}{
		"no text":         {`{"text":" "}`, "transcribe", false},
		"the wrong task":  {verbose, "transcribe", true},
		"no duration":     {`{"task":"transcribe","text":"a"}`, "transcribe", true},
		"text, not JSON:": {"the river flows\n", "transcribe", false},
	} {
		if checkTranscript([]byte(c.body), c.verbose, c.task) == nil {
			t.Errorf("%s: passed", name)
		}
	}
}

func TestToneWAVHeader(t *testing.T) {
	b := toneWAV(8000, 100, 440)
	le := binary.LittleEndian
	if len(b) != 44+200 || string(b[:4]) != "RIFF" || string(b[8:16]) != "WAVEfmt " || string(b[36:40]) != "data" {
		t.Fatalf("layout: %d bytes, %q", len(b), b[:40])
	}
	if le.Uint32(b[4:]) != uint32(len(b)-8) || le.Uint32(b[40:]) != 200 || le.Uint32(b[24:]) != 8000 ||
		le.Uint32(b[28:]) != 16000 || le.Uint16(b[32:]) != 2 || le.Uint16(b[34:]) != 16 {
		t.Fatalf("header fields wrong: % x", b[:44])
	}
	if int16(le.Uint16(b[44+2*5:])) == 0 {
		t.Fatalf("a silent tone")
	}
}
