// Package parsecache keeps what a parser made of a text, for texts that
// come back again and again: the DNS key records of DKIM and ARC, which a
// busy MX sees for every message of a signer. Decoding one (base64, DER,
// the RSA modulus, the crypto library's key object) costs several
// microseconds and a dozen allocations; a map lookup does not.
//
// The text is the key, so a changed record is a new entry and the DNS
// cache alone decides how long a record is used. Failures are kept too: a
// malformed record stays malformed. Bounded: emptied when full, which is
// simpler than an LRU and enough for the few hundred signers that matter.
package parsecache

import "sync"

// DefaultSize is the number of entries a Cache of size 0 keeps.
const DefaultSize = 1024

// Cache is safe for concurrent use. The zero Cache is ready, of
// DefaultSize; a nil *Cache parses every time.
type Cache[T any] struct {
	mu  sync.Mutex
	m   map[string]entry[T]
	max int
}

type entry[T any] struct {
	v   T
	err error
}

// New returns a cache of at most size entries (DefaultSize when size <= 0).
func New[T any](size int) *Cache[T] {
	if size <= 0 {
		size = DefaultSize
	}
	return &Cache[T]{m: make(map[string]entry[T]), max: size}
}

// Parse returns what parse made of text, parsing it only the first time.
// Two callers racing on a new text may both parse it; both get a good
// answer and one is kept.
func (c *Cache[T]) Parse(text string, parse func(string) (T, error)) (T, error) {
	if c == nil {
		return parse(text)
	}
	c.mu.Lock()
	e, ok := c.m[text]
	c.mu.Unlock()
	if ok {
		return e.v, e.err
	}
	v, err := parse(text)
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[string]entry[T])
	}
	if c.max <= 0 {
		c.max = DefaultSize
	}
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[text] = entry[T]{v, err}
	c.mu.Unlock()
	return v, err
}

// Len is the number of entries kept now.
func (c *Cache[T]) Len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
