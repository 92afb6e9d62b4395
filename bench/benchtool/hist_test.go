package main

import "testing"

// The buckets tile the integers: each value falls in the bucket whose
// bounds hold it, and the bounds increase.
func TestHistBuckets(t *testing.T) {
	for _, v := range []int64{0, 1, 63, 64, 65, 127, 128, 1000, 1 << 20, 123456789, 1 << 40, 1<<62 - 12345} {
		i := histIndex(v)
		if lo, hi := histLow(i), histLow(i+1); v < lo || v >= hi {
			t.Errorf("%d in bucket %d [%d, %d)", v, i, lo, hi)
		}
	}
	for i := 1; i <= histBuckets; i++ {
		if histLow(i) <= histLow(i-1) {
			t.Fatalf("bucket %d starts at %d, after %d", i, histLow(i), histLow(i-1))
		}
	}
}

func TestHistQuantile(t *testing.T) {
	var h hist
	for v := int64(1); v <= 100000; v++ {
		h.add(v * 1000)
	}
	for _, c := range []struct {
		q    float64
		want int64
	}{{0.5, 50e6}, {0.99, 99e6}, {1, 100e6}} {
		got := h.quantile(c.q)
		if d := float64(got-c.want) / float64(c.want); d < -0.03 || d > 0.03 {
			t.Errorf("quantile %.2f = %d, want about %d", c.q, got, c.want)
		}
	}
	if h.max != 100e6 {
		t.Errorf("max %d", h.max)
	}
}
