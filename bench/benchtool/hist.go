package main

import "math/bits"

// hist is a log-linear histogram of non-negative durations in nanoseconds:
// exact below 64 ns, then 32 buckets per power of two (about 3% wide), so
// percentiles are good to a few percent at any scale. The maximum is exact.
// It is not safe for concurrent use; each goroutine keeps its own and they
// are merged at the end.
type hist struct {
	counts [histBuckets]int64
	n      int64
	max    int64
}

const (
	histSubBits = 5
	histBuckets = 58 << histSubBits // values below 2^62 ns (146 years)
	histTop     = 1<<62 - 1
)

func histIndex(v int64) int {
	v = min(max(v, 0), histTop)
	e := bits.Len64(uint64(v)) - (histSubBits + 1)
	if e < 0 {
		e = 0
	}
	return e<<histSubBits + int(uint64(v)>>e)
}

// histLow is the smallest value of bucket i; histLow(i+1) is one past its
// largest.
func histLow(i int) int64 {
	if i < 2<<histSubBits {
		return int64(i)
	}
	e := i>>histSubBits - 1
	m := i - e<<histSubBits
	return int64(m) << e
}

func (h *hist) add(v int64) {
	v = min(max(v, 0), histTop)
	h.counts[histIndex(v)]++
	h.n++
	if v > h.max {
		h.max = v
	}
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	if o.max > h.max {
		h.max = o.max
	}
}

// quantile returns the value at quantile q (0..1): the middle of the bucket
// holding it, never more than the maximum. 0 when empty.
func (h *hist) quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	rank := int64(q*float64(h.n-1)) + 1
	var seen int64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := histLow(i), histLow(i+1)
			return min((lo+hi-1)/2, h.max)
		}
	}
	return h.max
}

// wireHist is a hist as JSON: the non-empty buckets only.
type wireHist struct {
	Buckets map[int]int64 `json:",omitempty"`
	N, Max  int64
}

func (h *hist) wire() wireHist {
	w := wireHist{Buckets: map[int]int64{}, N: h.n, Max: h.max}
	for i, c := range h.counts {
		if c != 0 {
			w.Buckets[i] = c
		}
	}
	return w
}

func (w wireHist) hist() *hist {
	h := &hist{n: w.N, max: w.Max}
	for i, c := range w.Buckets {
		if i >= 0 && i < histBuckets {
			h.counts[i] = c
		}
	}
	return h
}
