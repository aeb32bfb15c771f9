package bench

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func promptOf(t *testing.T, b *bodyBuilder, a Arrival, idx int) (chatRequest, []string) {
	t.Helper()
	body := b.build(a, idx)
	if len(body) > b.size(a) {
		t.Fatalf("body of %d bytes exceeds its size estimate %d", len(body), b.size(a))
	}
	var req chatRequest
	if err := json.Unmarshal(body, &req); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, body)
	}
	return req, strings.Fields(req.Messages[0].Content)
}

func TestBodyShape(t *testing.T) {
	b, err := newBodyBuilder(`m"odel`, true, 512, 42)
	if err != nil {
		t.Fatal(err)
	}
	req, words := promptOf(t, b, Arrival{InputTokens: 300, OutputTokens: 17}, 0)
	if req.Model != `m"odel` || req.MaxTokens != 17 || !req.Stream || req.StreamOptions == nil || !req.StreamOptions.IncludeUsage {
		t.Errorf("streaming body: %+v", req)
	}
	if len(req.Messages) != 1 || req.Messages[0].Role != "user" || len(words) != 300 {
		t.Errorf("want one user message of 300 words, got %d messages, %d words", len(req.Messages), len(words))
	}
	nb, _ := newBodyBuilder("m", false, 512, 42)
	req, words = promptOf(t, nb, Arrival{InputTokens: 0, OutputTokens: 0}, 0)
	if req.Stream || req.StreamOptions != nil || req.MaxTokens != 1 || len(words) != 1 {
		t.Errorf("non-streaming minimal body: %+v, %d words", req, len(words))
	}
}

func TestHashIDPrompts(t *testing.T) {
	b, _ := newBodyBuilder("m", true, 512, 1)
	// Two requests sharing their first two blocks, then diverging.
	_, w1 := promptOf(t, b, Arrival{InputTokens: 1500, HashIDs: []int{7, 8, 9}}, 0)
	_, w2 := promptOf(t, b, Arrival{InputTokens: 1300, HashIDs: []int{7, 8, 10}}, 1)
	if len(w1) != 1500 || len(w2) != 1300 {
		t.Fatalf("word counts %d, %d", len(w1), len(w2))
	}
	if !slices.Equal(w1[:1024], w2[:1024]) {
		t.Error("equal hash ids must give equal prefix words")
	}
	if slices.Equal(w1[1024:1100], w2[1024:1100]) {
		t.Error("different hash ids gave the same block")
	}
	if w1[1499] == w2[1299] {
		t.Error("the final nonce words are equal")
	}
	// The same ids give the same words in another run (another salt) too,
	// and a clamped prompt is a prefix of the full one.
	other, _ := newBodyBuilder("m", true, 512, 99)
	_, w3 := promptOf(t, other, Arrival{InputTokens: 700, HashIDs: []int{7, 8, 9}}, 5)
	if !slices.Equal(w1[:699], w3[:699]) {
		t.Error("block words depend on the run")
	}
	// A scaled block size keeps the sharing.
	small, _ := newBodyBuilder("m", true, 51, 1)
	_, s1 := promptOf(t, small, Arrival{InputTokens: 150, HashIDs: []int{7, 8, 9}}, 0)
	_, s2 := promptOf(t, small, Arrival{InputTokens: 150, HashIDs: []int{7, 8, 11}}, 1)
	if !slices.Equal(s1[:102], s2[:102]) || slices.Equal(s1[102:149], s2[102:149]) {
		t.Error("51-word blocks: want the first two shared and the third not")
	}
	// A prompt longer than its blocks is padded, still exactly sized.
	_, long := promptOf(t, b, Arrival{InputTokens: 600, HashIDs: []int{1}}, 2)
	if len(long) != 600 {
		t.Errorf("padded prompt has %d words", len(long))
	}
}

func TestPlainPromptsShareNothing(t *testing.T) {
	b, _ := newBodyBuilder("m", true, 512, 1)
	_, w1 := promptOf(t, b, Arrival{InputTokens: 200}, 0)
	_, w2 := promptOf(t, b, Arrival{InputTokens: 200}, 1)
	if w1[0] == w2[0] {
		t.Error("prompts without hash ids must differ from the first word")
	}
	same := 0
	for i := range w1 {
		if w1[i] == w2[i] {
			same++
		}
	}
	if same > 20 {
		t.Errorf("%d of 200 words equal at equal positions", same)
	}
	_, again := promptOf(t, b, Arrival{InputTokens: 200}, 0)
	if !slices.Equal(w1, again) {
		t.Error("the same salt and index must rebuild the same prompt")
	}
}

func TestVocabWordsAreDistinct(t *testing.T) {
	v := buildVocab()
	seen := map[string]bool{}
	for i := 0; i < len(v); i += wordLen {
		seen[string(v[i:i+wordLen])] = true
	}
	if len(seen) != vocabSize {
		t.Errorf("%d distinct words, want %d", len(seen), vocabSize)
	}
}
