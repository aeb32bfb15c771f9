package openai

import "testing"

// A token count no answer can hold makes the whole usage unknown, in every
// usage shape the gateway reads; counts up to MaxTokensLimit are read.
func TestAbsurdUsageIsUnknown(t *testing.T) {
	for _, v := range []string{"9223372036854775807", "99999999999999999999999", "16777217", "-5", "1e300", "5.5"} {
		chat := `{"usage":{"prompt_tokens":3,"completion_tokens":` + v + `,"total_tokens":9}}`
		if u, ok := FindUsage([]byte(chat)); ok {
			t.Errorf("FindUsage with %s: %+v, want unknown", v, u)
		}
		if u, ok := FindEndpointUsage([]byte(chat)); ok {
			t.Errorf("FindEndpointUsage with %s: %+v, want unknown", v, u)
		}
		resp := `{"id":"resp_1","usage":{"input_tokens":` + v + `,"output_tokens":2,"total_tokens":9}}`
		if u, ok := FindResponseUsage([]byte(resp)); ok {
			t.Errorf("FindResponseUsage with %s: %+v, want unknown", v, u)
		}
	}
	const most = `{"usage":{"prompt_tokens":16777216,"completion_tokens":16777216,"total_tokens":33554432}}`
	if u, ok := FindUsage([]byte(most)); !ok || u.PromptTokens != MaxTokensLimit || u.CompletionTokens != MaxTokensLimit {
		t.Errorf("FindUsage at the bound: %+v %v", u, ok)
	}
	if u, ok := FindEndpointUsage([]byte(most)); !ok || u.PromptTokens != MaxTokensLimit {
		t.Errorf("FindEndpointUsage at the bound: %+v %v", u, ok)
	}
}
