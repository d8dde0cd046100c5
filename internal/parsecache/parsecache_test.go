package parsecache

import (
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

func TestParseOnceKeepsValuesAndErrors(t *testing.T) {
	var calls int
	parse := func(s string) (*int, error) {
		calls++
		n, err := strconv.Atoi(s)
		if err != nil {
			return nil, err
		}
		return &n, nil
	}
	c := New[*int](2)
	a, _ := c.Parse("7", parse)
	b, _ := c.Parse("7", parse)
	if a == nil || a != b || calls != 1 {
		t.Fatalf("the same text parsed %d times, values %p %p", calls, a, b)
	}
	if _, err := c.Parse("x", parse); err == nil {
		t.Fatal("no error for a bad text")
	}
	if _, err := c.Parse("x", parse); err == nil || calls != 2 {
		t.Fatalf("a bad text was parsed again (%d calls) or forgot its error (%v)", calls, err)
	}
	c.Parse("8", parse)
	if c.Len() > 2 {
		t.Fatalf("%d entries in a cache of 2", c.Len())
	}
	var none *Cache[*int]
	if v, err := none.Parse("9", parse); err != nil || *v != 9 || none.Len() != 0 {
		t.Fatalf("a nil cache: %v %v", v, err)
	}
	if New[int](0).max != DefaultSize {
		t.Fatal("size 0 is not the default")
	}
	var zero Cache[*int]
	if v, err := zero.Parse("10", parse); err != nil || *v != 10 || zero.Len() != 1 || zero.max != DefaultSize {
		t.Fatalf("the zero Cache: %v %v, %d entries of %d", v, err, zero.Len(), zero.max)
	}
}

func TestConcurrentParse(t *testing.T) {
	c := New[int](8)
	var calls atomic.Int64
	parse := func(s string) (int, error) {
		calls.Add(1)
		if s == "bad" {
			return 0, errors.New("bad")
		}
		return len(s), nil
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				text := strconv.Itoa((g + i) % 12)
				if v, err := c.Parse(text, parse); err != nil || v != len(text) {
					t.Errorf("%q: %v %v", text, v, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if c.Len() > 8 {
		t.Fatalf("%d entries in a cache of 8", c.Len())
	}
}
