package xdstest

import (
	"errors"
	"sync"
)

// Rejecter is an Options.NACK that a test arms per type: the next response
// of an armed type is NACKed with the given message, once; every other
// response is ACKed.
type Rejecter struct {
	mu    sync.Mutex
	next  map[string]string // type URL → error_detail message
	count map[string]int    // type URL → responses still to NACK; 1 when absent
}

// RejectNextN arms the NACK of the next n responses of typeURL.
func (r *Rejecter) RejectNextN(typeURL, msg string, n int) {
	r.RejectNext(typeURL, msg)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.count == nil {
		r.count = map[string]int{}
	}
	r.count[typeURL] = n
}

// RejectNext arms the NACK of the next response of typeURL.
func (r *Rejecter) RejectNext(typeURL, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.next == nil {
		r.next = map[string]string{}
	}
	r.next[typeURL] = msg
	delete(r.count, typeURL)
}

// Decide is the Options.NACK function.
func (r *Rejecter) Decide(resp *Response) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	msg, ok := r.next[resp.TypeURL]
	if !ok {
		return nil
	}
	if r.count[resp.TypeURL] > 1 {
		r.count[resp.TypeURL]--
	} else {
		delete(r.next, resp.TypeURL)
		delete(r.count, resp.TypeURL)
	}
	return errors.New(msg)
}
