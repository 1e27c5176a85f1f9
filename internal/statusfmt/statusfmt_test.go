package statusfmt

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestShort(t *testing.T) {
	sha := "4bf5122f344554c53bde2ebb8cd2b7e3d1600ad631c385a5d7cce23c7785459a"
	for in, want := range map[string]string{
		"":              "",
		"abc":           "abc",
		"123456789012":  "123456789012",
		"1234567890123": "123456789012",
		sha:             "4bf5122f3445",
		"ééééééééééééé": "éééééééééééé",
		"版本版本版本版本版本版本版本": "版本版本版本版本版本版本",
	} {
		if got := Short(in); got != want {
			t.Errorf("Short(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAgeAndAgo(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		t        time.Time
		age, ago string
	}{
		{time.Time{}, "", ""},
		{now, "0s", "0s ago"},
		{now.Add(-1499 * time.Millisecond), "1s", "1s ago"},
		{now.Add(-1500 * time.Millisecond), "2s", "2s ago"},
		{now.Add(-90 * time.Second), "1m30s", "1m30s ago"},
		{now.Add(-26 * time.Hour), "26h0m0s", "26h0m0s ago"},
		{now.Add(3 * time.Second), "-3s", "-3s ago"}, // a peer's clock ahead of ours
	} {
		if got := Age(now, tc.t); got != tc.age {
			t.Errorf("Age(now, %v) = %q, want %q", tc.t, got, tc.age)
		}
		if got := Ago(now, tc.t); got != tc.ago {
			t.Errorf("Ago(now, %v) = %q, want %q", tc.t, got, tc.ago)
		}
	}
}

func TestSize(t *testing.T) {
	for _, tc := range []struct {
		n             int64
		size, compact string
	}{
		{0, "0 B", "0B"},
		{1023, "1023 B", "1023B"},
		{1024, "1.0 KiB", "1.0KiB"},
		{1536, "1.5 KiB", "1.5KiB"},
		{1<<20 - 1, "1024.0 KiB", "1024.0KiB"},
		{1 << 20, "1.0 MiB", "1.0MiB"},
		{3 << 20, "3.0 MiB", "3.0MiB"},
		{5 << 30, "5.0 GiB", "5.0GiB"},
		{1 << 62, "4.0 EiB", "4.0EiB"},
	} {
		if got := Size(tc.n); got != tc.size {
			t.Errorf("Size(%d) = %q, want %q", tc.n, got, tc.size)
		}
		if got := CompactSize(tc.n); got != tc.compact {
			t.Errorf("CompactSize(%d) = %q, want %q", tc.n, got, tc.compact)
		}
	}
}

func TestTruncate(t *testing.T) {
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"", 5, ""},
		{"short", 5, "short"},
		{"longer", 5, "long…"},
		{"connection refused", 10, "connectio…"},
		// A byte count would cut é (2 bytes) or a CJK character (3 bytes)
		// in half here; whole characters are kept.
		{"café au lait", 5, "café…"},
		{"aéé", 2, "a…"},
		{"ééééé", 4, "ééé…"},
		{"ééééé", 5, "ééééé"},
		{"模块加载失败：缺少导入", 6, "模块加载失…"},
		{"VM 启动失败", 4, "VM …"},
		{"x", 1, "x"},
		{"xy", 1, "…"},
		{"xy", 0, ""},
	} {
		if got := Truncate(tc.s, tc.n); got != tc.want {
			t.Errorf("Truncate(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
}

// TestTruncateNeverSplitsACharacter cuts text that mixes one-, two-, three-
// and four-byte characters at every length.
func TestTruncateNeverSplitsACharacter(t *testing.T) {
	s := "Wasm é 模块 🚀 refused: ünïcödé 失败"
	for n := 0; n <= utf8.RuneCountInString(s)+1; n++ {
		got := Truncate(s, n)
		if !utf8.ValidString(got) {
			t.Fatalf("Truncate(s, %d) = %q: not valid UTF-8", n, got)
		}
		if c := utf8.RuneCountInString(got); c > n {
			t.Errorf("Truncate(s, %d) = %q: %d characters", n, got, c)
		}
		if body := strings.TrimSuffix(got, "…"); !strings.HasPrefix(s, body) {
			t.Errorf("Truncate(s, %d) = %q: not a prefix of s", n, got)
		}
	}
}

func TestOneLine(t *testing.T) {
	for in, want := range map[string]string{
		"":                       "",
		"VM\nrefused":            "VM refused",
		"  bad\t\tcluster \r\n ": "bad cluster",
		"模块\n加载  失败":             "模块 加载 失败",
	} {
		if got := OneLine(in); got != want {
			t.Errorf("OneLine(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTypeName(t *testing.T) {
	for in, want := range map[string]string{
		"type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig": "TypedExtensionConfig",
		"type.googleapis.com/envoy.config.listener.v3.Listener":         "Listener",
		"Listener": "Listener",
		"":         "",
	} {
		if got := TypeName(in); got != want {
			t.Errorf("TypeName(%q) = %q, want %q", in, got, want)
		}
	}
}
