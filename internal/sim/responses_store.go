package sim

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
)

// Bounds of the Responses store. A simulator runs for hours under load, so
// it cannot keep every answer: past either bound the oldest responses are
// evicted, and one response larger than the byte bound is not kept at all.
const (
	respStoreMaxResponses = 1024
	respStoreMaxBytes     = 128 << 20
)

// storedResponse is what GET, input_items and previous_response_id need.
type storedResponse struct {
	body         []byte            // the final Response JSON
	items        []json.RawMessage // the input items, ids assigned, in input order
	itemIDs      []string
	conversation []string // input and output texts of the whole chain, oldest first
	size         int
}

func newStoredResponse(body []byte, id string, rq *respRequest, conversation []string) *storedResponse {
	sr := &storedResponse{body: body, conversation: conversation}
	for i, it := range rq.items {
		itemID := "msg_" + id[len("resp_"):] + "_" + strconv.Itoa(i)
		var raw json.RawMessage
		if it.raw != nil {
			raw, itemID = it.raw, idOf(it.raw, itemID)
		} else {
			raw = mustMarshal(inputMessage{Type: "message", ID: itemID, Status: "completed", Role: it.role, Content: it.content()})
		}
		sr.items = append(sr.items, raw)
		sr.itemIDs = append(sr.itemIDs, itemID)
		sr.size += len(raw)
	}
	sr.size += len(body)
	for _, t := range conversation {
		sr.size += len(t) // shared with earlier links of the chain: counted again, conservatively
	}
	return sr
}

// idOf returns the "id" a verbatim item carries, else fallback.
func idOf(raw json.RawMessage, fallback string) string {
	var v struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(raw, &v) == nil && v.ID != "" {
		return v.ID
	}
	return fallback
}

// inputMessage is a message input item as input_items lists it.
type inputMessage struct {
	Type    string          `json:"type"`
	ID      string          `json:"id"`
	Status  string          `json:"status"`
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// content is the item's content as parts: string content becomes one
// input_text part (output_text for an assistant turn), as OpenAI lists it.
func (it inputItem) content() json.RawMessage {
	if it.text == nil {
		return it.parts
	}
	if it.role == "assistant" {
		return mustMarshal([]outputText{{Type: "output_text", Annotations: []struct{}{}, Logprobs: []struct{}{}, Text: *it.text}})
	}
	return mustMarshal([]contentPart{{Type: "input_text", Text: *it.text}})
}

// respStore keeps finished responses, oldest evicted first.
type respStore struct {
	mu    sync.Mutex
	byID  map[string]*storedResponse
	order []string // insertion order; may hold ids deleted since
	bytes int
}

func newRespStore() *respStore { return &respStore{byID: make(map[string]*storedResponse)} }

func (st *respStore) put(id string, sr *storedResponse) {
	if sr.size > respStoreMaxBytes {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for len(st.order) > 0 && (len(st.byID) >= respStoreMaxResponses || st.bytes+sr.size > respStoreMaxBytes) {
		st.remove(st.order[0])
		st.order = st.order[1:]
	}
	st.byID[id] = sr
	st.bytes += sr.size
	st.order = append(st.order, id)
	if len(st.order) > 2*respStoreMaxResponses { // deletions left holes: drop them
		live := st.order[:0]
		for _, k := range st.order {
			if st.byID[k] != nil {
				live = append(live, k)
			}
		}
		st.order = live
	}
}

func (st *respStore) get(id string) (*storedResponse, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	sr, ok := st.byID[id]
	return sr, ok
}

func (st *respStore) delete(id string) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.remove(id)
}

func (st *respStore) remove(id string) bool {
	sr, ok := st.byID[id]
	if ok {
		delete(st.byID, id)
		st.bytes -= sr.size
	}
	return ok
}

func writeResponseNotFound(w http.ResponseWriter, id string) {
	// OpenAI names neither a param nor a code here.
	writeErrorParam(w, http.StatusNotFound, "invalid_request_error", "", "", "Response with id '"+id+"' not found.")
}

func (s *Server) handleGetResponse(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	sr, ok := s.responses.get(id)
	if !ok {
		writeResponseNotFound(w, id)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(sr.body)
}

func (s *Server) handleDeleteResponse(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !s.responses.delete(id) {
		writeResponseNotFound(w, id)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Deleted bool   `json:"deleted"`
	}{id, "response", true})
}

// handleCancelResponse answers as OpenAI does for a response that was not
// created with background=true, which every simulator response is.
func (s *Server) handleCancelResponse(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, ok := s.responses.get(id); !ok {
		writeResponseNotFound(w, id)
		return
	}
	writeErrorParam(w, http.StatusBadRequest, "invalid_request_error", "", "",
		"Only responses created with background=true can be cancelled.")
}

// handleInputItems lists a stored response's input items with OpenAI's
// cursor paging: order (default desc), after (an item id), limit (1..100,
// default 20).
func (s *Server) handleInputItems(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	sr, ok := s.responses.get(id)
	if !ok {
		writeResponseNotFound(w, id)
		return
	}
	q := r.URL.Query()
	limit := 20
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			writeErrorParam(w, http.StatusBadRequest, "invalid_request_error", "invalid_request", "limit",
				"limit must be an integer between 1 and 100, got "+strconv.Quote(v))
			return
		}
		limit = n
	}
	idx := make([]int, len(sr.items))
	for i := range idx {
		idx[i] = i
	}
	switch q.Get("order") {
	case "", "desc":
		for i, j := 0, len(idx)-1; i < j; i, j = i+1, j-1 {
			idx[i], idx[j] = idx[j], idx[i]
		}
	case "asc":
	default:
		writeErrorParam(w, http.StatusBadRequest, "invalid_request_error", "invalid_request", "order",
			"order must be \"asc\" or \"desc\", got "+strconv.Quote(q.Get("order")))
		return
	}
	if after := q.Get("after"); after != "" { // an unknown id lists from the start
		for k, i := range idx {
			if sr.itemIDs[i] == after {
				idx = idx[k+1:]
				break
			}
		}
	}
	page := idx[:min(limit, len(idx))]
	list := itemList{Object: "list", Data: make([]json.RawMessage, 0, len(page)), HasMore: len(idx) > len(page)}
	for _, i := range page {
		list.Data = append(list.Data, sr.items[i])
	}
	if len(page) > 0 {
		list.FirstID, list.LastID = &sr.itemIDs[page[0]], &sr.itemIDs[page[len(page)-1]]
	}
	writeJSON(w, http.StatusOK, list)
}

type itemList struct {
	Object  string            `json:"object"`
	Data    []json.RawMessage `json:"data"`
	FirstID *string           `json:"first_id"`
	LastID  *string           `json:"last_id"`
	HasMore bool              `json:"has_more"`
}
