package proxywasm

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// specExample is the serialization of {"a": "1", "b": "22"} given in the
// ABI specification.
var specExample = []byte{
	2, 0, 0, 0,
	1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0,
	'a', 0, '1', 0, 'b', 0, '2', '2', 0,
}

func TestEncodePairsMatchesSpec(t *testing.T) {
	got := encodePairs([]Header{{"a", "1"}, {"b", "22"}})
	if !bytes.Equal(got, specExample) {
		t.Errorf("encodePairs = %v, want %v", got, specExample)
	}
	if encodePairs(nil) != nil {
		t.Error("no headers must encode as an empty buffer")
	}
}

func TestDecodePairs(t *testing.T) {
	got, err := decodePairs(specExample)
	if err != nil {
		t.Fatal(err)
	}
	want := []Header{{"a", "1"}, {"b", "22"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decodePairs = %v, want %v", got, want)
	}
	for _, empty := range [][]byte{nil, {0}} {
		if hs, err := decodePairs(empty); err != nil || len(hs) != 0 {
			t.Errorf("decodePairs(%v) = %v, %v; want empty", empty, hs, err)
		}
	}
}

func TestDecodePairsRoundTrip(t *testing.T) {
	in := []Header{{":path", "/x?y=1"}, {"empty", ""}, {"x-multi", "a,b"}}
	out, err := decodePairs(encodePairs(in))
	if err != nil || !reflect.DeepEqual(in, out) {
		t.Errorf("round trip = %v, %v", out, err)
	}
}

func TestDecodePairsRejectsCorruptInput(t *testing.T) {
	cases := map[string][]byte{
		"short count":    {1, 0},
		"huge count":     {0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		"value too long": append(append([]byte(nil), specExample[:len(specExample)-3]...), 0, 0),
	}
	for name, in := range cases {
		if _, err := decodePairs(in); !errors.Is(err, errBadPairs) {
			t.Errorf("%s: error = %v, want errBadPairs", name, err)
		}
	}
}

func TestAllocationsStayUntilTaken(t *testing.T) {
	clear(allocations)
	addr := allocate(5)
	other := allocate(3)
	if addr == 0 || other == 0 || addr == other {
		t.Fatalf("addresses %x %x", addr, other)
	}
	copy(allocations[addr], "hello")
	got, err := takeAllocation(addr, 4)
	if err != nil || string(got) != "hell" {
		t.Errorf("takeAllocation = %q, %v", got, err)
	}
	if len(allocations) != 0 {
		t.Errorf("%d allocations left after a take; leftovers must be dropped", len(allocations))
	}
	if _, err := takeAllocation(addr, 4); !errors.Is(err, StatusInvalidMemoryAccess) {
		t.Errorf("second take error = %v", err)
	}
}

func TestTakeAllocationChecksSize(t *testing.T) {
	addr := allocate(2)
	if _, err := takeAllocation(addr, 3); !errors.Is(err, StatusInvalidMemoryAccess) {
		t.Errorf("oversized take error = %v", err)
	}
	zero := allocate(0)
	if zero == 0 {
		t.Error("a zero-size allocation must not return the failure address 0")
	}
	if got, err := takeAllocation(zero, 0); err != nil || len(got) != 0 {
		t.Errorf("empty take = %v, %v", got, err)
	}
}
