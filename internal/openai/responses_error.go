package openai

import "strconv"

// ResponsesErrorEvent renders the error as a Responses API stream's
// "error" event, for a Responses stream that already started: named
// "error", its data the ResponseErrorEvent object (type, code, message,
// param, sequence_number) the SDKs and other clients of that API read by
// its "type", not chat's {"error": {...}}, which has no type and would
// read as an event of no kind. seq is the next sequence number (the last
// event's plus one); known false leaves it out, as nothing numbered came.
func (e *Error) ResponsesErrorEvent(seq int64, known bool) []byte {
	b := make([]byte, 0, 128+len(e.Message))
	b = append(b, "event: error\ndata: {\"type\":\"error\",\"code\":"...)
	if e.Code == "" {
		b = append(b, "null"...)
	} else {
		b = appendJSONString(b, e.Code)
	}
	b = append(b, `,"message":`...)
	b = appendJSONString(b, e.Message)
	b = append(b, `,"param":`...)
	if e.Param == "" {
		b = append(b, "null"...)
	} else {
		b = appendJSONString(b, e.Param)
	}
	if known {
		b = append(b, `,"sequence_number":`...)
		b = strconv.AppendInt(b, seq, 10)
	}
	return append(b, "}\n\n"...)
}

// EventSequence is a Responses API stream event's sequence_number (data a
// valid JSON object); ok is false when it has none, or not an integer.
func EventSequence(data []byte) (seq int64, ok bool) {
	m := newMembers(data)
	for {
		key, val, more := m.next()
		if !more {
			return 0, false
		}
		if string(key) == "sequence_number" {
			n, err := strconv.ParseInt(string(val), 10, 64)
			return n, err == nil
		}
	}
}
