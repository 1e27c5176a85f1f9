package xdstest

import (
	"errors"
	"sync"
)

// Rejecter is an Options.NACK that a test arms per type: the next response
// of an armed type is NACKed with the given message, once; every other
// response is ACKed.
type Rejecter struct {
	mu   sync.Mutex
	next map[string]string // type URL → error_detail message
}

// RejectNext arms the NACK of the next response of typeURL.
func (r *Rejecter) RejectNext(typeURL, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.next == nil {
		r.next = map[string]string{}
	}
	r.next[typeURL] = msg
}

// Decide is the Options.NACK function.
func (r *Rejecter) Decide(resp *Response) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	msg, ok := r.next[resp.TypeURL]
	if !ok {
		return nil
	}
	delete(r.next, resp.TypeURL)
	return errors.New(msg)
}
