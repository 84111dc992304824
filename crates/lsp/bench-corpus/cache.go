// Package cache is a small LRU cache, written for modeld's completion benchmark.
package cache

import "container/list"

type entry struct {
	key   string
	value []byte
}

// LRU keeps at most Capacity entries, evicting the least recently used.
type LRU struct {
	Capacity int
	order    *list.List
	items    map[string]*list.Element
}

// New returns an empty cache holding up to capacity entries.
func New(capacity int) *LRU {
	return &LRU{Capacity: capacity, order: list.New(), items: make(map[string]*list.Element)}
}

// Get returns the value for key and marks it recently used.
func (c *LRU) Get(key string) ([]byte, bool) {
	element, ok := c.items[key]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(element)
	return element.Value.(*entry).value, true
}

// Put stores value under key, evicting the oldest entry when full.
func (c *LRU) Put(key string, value []byte) {
	if element, ok := c.items[key]; ok {
		element.Value.(*entry).value = value
		c.order.MoveToFront(element)
		return
	}
	element := c.order.PushFront(&entry{key: key, value: value})
	c.items[key] = element
	if c.order.Len() > c.Capacity {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.items, oldest.Value.(*entry).key)
	}
}

// Len is the number of entries.
func (c *LRU) Len() int {
	return c.order.Len()
}
