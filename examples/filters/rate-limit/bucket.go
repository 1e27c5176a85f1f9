package main

// bucket is a token bucket on the host's clock (nanoseconds).
type bucket struct {
	capacity float64
	perNano  float64 // tokens added per nanosecond
	tokens   float64
	last     int64
}

// newBucket returns a full bucket of size tokens that refills completely
// in windowSeconds.
func newBucket(size int64, windowSeconds float64, now int64) *bucket {
	return &bucket{
		capacity: float64(size),
		perNano:  float64(size) / (windowSeconds * 1e9),
		tokens:   float64(size),
		last:     now,
	}
}

// take spends a token if one is available at time now.
func (b *bucket) take(now int64) bool {
	// A clock that steps back must not drain or overfill the bucket.
	if elapsed := now - b.last; elapsed > 0 {
		b.tokens = min(b.capacity, b.tokens+float64(elapsed)*b.perNano)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
