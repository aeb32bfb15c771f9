package main

import (
	"fmt"
	"strings"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/responses"
)

// responsesChecks: the Responses API over two backends (go.sh starts two
// simulators), so a follow-up by id sent to the wrong one would fail:
// create, stream to response.completed through the SDK's event types,
// previous_response_id, Get, InputItems, Delete, and 404s for a deleted
// and an unknown id.
func (r *runner) responsesChecks(c openai.Client) {
	var first *responses.Response
	r.check("responses.new", func() (string, error) {
		resp, err := c.Responses.New(r.ctx, responses.ResponseNewParams{
			Model:        r.model,
			Input:        responses.ResponseNewParamsInputUnion{OfString: openai.String("what is a sluice")},
			Instructions: openai.String("be brief"),
		})
		if err != nil {
			return "", err
		}
		if string(resp.Object) != "response" || !strings.HasPrefix(resp.ID, "resp_") || resp.OutputText() == "" ||
			resp.Status != responses.ResponseStatusCompleted || resp.Usage.OutputTokens <= 0 {
			return "", fmt.Errorf("object %q id %q status %q, %d output chars, output_tokens %d",
				resp.Object, resp.ID, resp.Status, len(resp.OutputText()), resp.Usage.OutputTokens)
		}
		first = resp
		return fmt.Sprintf("%s, status %s, output_text %d chars, usage %d+%d", resp.ID, resp.Status,
			len(resp.OutputText()), resp.Usage.InputTokens, resp.Usage.OutputTokens), nil
	})
	r.check("responses.new max_output_tokens", func() (string, error) {
		// A length stop is "incomplete" with reason max_output_tokens, as
		// OpenAI reports it (the simulator uses the whole limit).
		resp, err := c.Responses.New(r.ctx, responses.ResponseNewParams{
			Model:           r.model,
			Input:           responses.ResponseNewParamsInputUnion{OfString: openai.String("what is a sluice")},
			MaxOutputTokens: openai.Int(8),
		})
		if err != nil {
			return "", err
		}
		if resp.Status != responses.ResponseStatusIncomplete || resp.IncompleteDetails.Reason != "max_output_tokens" ||
			resp.Usage.OutputTokens != 8 || resp.OutputText() == "" {
			return "", fmt.Errorf("status %q reason %q output_tokens %d", resp.Status, resp.IncompleteDetails.Reason, resp.Usage.OutputTokens)
		}
		return fmt.Sprintf("status %s, reason %s, output_tokens %d", resp.Status, resp.IncompleteDetails.Reason, resp.Usage.OutputTokens), nil
	})
	stream := func(limit int64, want string) (string, error) {
		p := responses.ResponseNewParams{
			Model: r.model,
			Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hi")},
		}
		if limit > 0 {
			p.MaxOutputTokens = openai.Int(limit)
		}
		s := c.Responses.NewStreaming(r.ctx, p)
		defer s.Close()
		events, deltas := 0, 0
		var text strings.Builder
		var final *responses.Response
		last := ""
		for s.Next() {
			ev := s.Current()
			events++
			last = ev.Type
			switch v := ev.AsAny().(type) {
			case responses.ResponseTextDeltaEvent:
				deltas++
				text.WriteString(v.Delta)
			case responses.ResponseCompletedEvent:
				final = &v.Response
			case responses.ResponseIncompleteEvent:
				final = &v.Response
			}
		}
		if err := s.Err(); err != nil {
			return "", err
		}
		if final == nil || last != want {
			return "", fmt.Errorf("%d events, last %q, want %s last", events, last, want)
		}
		if deltas == 0 || text.String() != final.OutputText() || final.Usage.OutputTokens != int64(deltas) {
			return "", fmt.Errorf("%d deltas making %q, final output_text %q, output_tokens %d",
				deltas, text.String(), final.OutputText(), final.Usage.OutputTokens)
		}
		return fmt.Sprintf("%d events, %d output_text deltas = final output_text, last %s (status %s), output_tokens %d",
			events, deltas, last, final.Status, final.Usage.OutputTokens), nil
	}
	r.check("responses stream", func() (string, error) { return stream(0, "response.completed") })
	r.check("responses stream, limited", func() (string, error) { return stream(5, "response.incomplete") })
	if first == nil {
		return // the follow-ups need the first response; its line says why
	}
	r.check("previous_response_id x3", func() (string, error) {
		prev := first.ID
		for i := range 3 {
			resp, err := c.Responses.New(r.ctx, responses.ResponseNewParams{
				Model:              r.model,
				Input:              responses.ResponseNewParamsInputUnion{OfString: openai.String("and then?")},
				PreviousResponseID: openai.String(prev),
				MaxOutputTokens:    openai.Int(4),
			})
			if err != nil {
				return "", fmt.Errorf("follow-up %d: %w", i+1, err)
			}
			if resp.ID == prev || resp.PreviousResponseID != prev {
				return "", fmt.Errorf("follow-up %d: id %q previous_response_id %q, want a new id after %q", i+1, resp.ID, resp.PreviousResponseID, prev)
			}
			prev = resp.ID
		}
		return "each a new id naming the one before", nil
	})
	r.check("responses.get", func() (string, error) {
		got, err := c.Responses.Get(r.ctx, first.ID, responses.ResponseGetParams{})
		if err != nil {
			return "", err
		}
		if got.ID != first.ID || got.OutputText() != first.OutputText() {
			return "", fmt.Errorf("got %q with output %q, want %q with %q", got.ID, got.OutputText(), first.ID, first.OutputText())
		}
		return fmt.Sprintf("same id and output_text, status %s", got.Status), nil
	})
	r.check("responses.inputItems.list", func() (string, error) {
		var kinds []string
		it := c.Responses.InputItems.ListAutoPaging(r.ctx, first.ID, responses.InputItemListParams{})
		for it.Next() {
			item := it.Current()
			kinds = append(kinds, item.Type+"/"+item.Role)
		}
		if err := it.Err(); err != nil {
			return "", err
		}
		if len(kinds) == 0 {
			return "", fmt.Errorf("no input items")
		}
		return strings.Join(kinds, ","), nil
	})
	r.check("responses.delete", func() (string, error) {
		if err := c.Responses.Delete(r.ctx, first.ID); err != nil {
			return "", err
		}
		_, err := c.Responses.Get(r.ctx, first.ID, responses.ResponseGetParams{})
		e, aerr := apiError(err)
		if aerr != nil {
			return "", fmt.Errorf("get after delete: %w", aerr)
		}
		if e.StatusCode != 404 {
			return "", fmt.Errorf("get after delete: status %d, want 404", e.StatusCode)
		}
		return fmt.Sprintf("deleted; get then: *openai.Error %d %s", e.StatusCode, e.Code), nil
	})
	r.check("responses.get unknown id", func() (string, error) {
		_, err := c.Responses.Get(r.ctx, "resp_sdkcheckunknown0000000000000000", responses.ResponseGetParams{})
		e, aerr := apiError(err)
		if aerr != nil {
			return "", aerr
		}
		if e.StatusCode != 404 || e.Message == "" {
			return "", fmt.Errorf("status %d message %q, want 404 with a message", e.StatusCode, e.Message)
		}
		return fmt.Sprintf("*openai.Error %d type %s code %s", e.StatusCode, e.Type, e.Code), nil
	})
}
