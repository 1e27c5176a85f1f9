package pluginconfig

import (
	"errors"
	"strings"
	"testing"
)

func TestParseScalars(t *testing.T) {
	obj, err := Parse([]byte(` {"header": "x-wasm", "n": 3, "f": -1.5e2, "on": true, "off": false, "nil": null} `))
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := obj.String("header"); !ok || s != "x-wasm" {
		t.Errorf("header = %q, %v", s, ok)
	}
	if n, ok := obj.Int("n"); !ok || n != 3 {
		t.Errorf("n = %d, %v", n, ok)
	}
	if f, ok := obj.Float("f"); !ok || f != -150 {
		t.Errorf("f = %v, %v", f, ok)
	}
	if b, ok := obj.Bool("on"); !ok || !b {
		t.Errorf("on = %v, %v", b, ok)
	}
	if b, ok := obj.Bool("off"); !ok || b {
		t.Errorf("off = %v, %v", b, ok)
	}
	if v, ok := obj.Get("nil"); !ok || v.Kind != KindNull {
		t.Errorf("nil = %+v, %v", v, ok)
	}
	if _, ok := obj.String("n"); ok {
		t.Error("a number must not read as a string")
	}
	if _, ok := obj.Int("missing"); ok {
		t.Error("a missing member must not be found")
	}
}

func TestIntRejectsFractions(t *testing.T) {
	obj, err := Parse([]byte(`{"a": 1.5, "b": 1e3, "c": 99999999999999999999}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := obj.Int("a"); ok {
		t.Error("1.5 read as an integer")
	}
	if n, ok := obj.Int("b"); !ok || n != 1000 {
		t.Errorf("1e3 = %d, %v", n, ok)
	}
	if _, ok := obj.Int("c"); ok {
		t.Error("a value beyond int64 read as an integer")
	}
}

func TestStringEscapes(t *testing.T) {
	obj, err := Parse([]byte(`{"s": "a\"b\\c\/d\n\t\u00e9\ud83d\ude00 ü", "lone": "\ud800x"}`))
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := obj.String("s"); s != "a\"b\\c/d\n\té😀 ü" {
		t.Errorf("s = %q", s)
	}
	if s, _ := obj.String("lone"); s != "\uFFFDx" {
		t.Errorf("lone = %q", s)
	}
}

func TestNestedKeptRaw(t *testing.T) {
	obj, err := Parse([]byte(`{"headers": {"x-a": "1", "x-b": "2", "deep": [1, {"k": [true]}]}, "list": [ "a" , 2 ]}`))
	if err != nil {
		t.Fatal(err)
	}
	v, _ := obj.Get("list")
	if v.Kind != KindArray || v.Raw != `[ "a" , 2 ]` {
		t.Errorf("list = %+v", v)
	}
	inner, ok, err := obj.Object("headers")
	if err != nil || !ok {
		t.Fatalf("headers: %v %v", ok, err)
	}
	var names []string
	for _, m := range inner.Members {
		names = append(names, m.Name)
	}
	if got := strings.Join(names, ","); got != "x-a,x-b,deep" {
		t.Errorf("member order = %s", got)
	}
	if _, ok, _ := obj.Object("list"); ok {
		t.Error("an array must not read as an object")
	}
}

func TestLastDuplicateWins(t *testing.T) {
	obj, err := Parse([]byte(`{"a": "1", "a": "2"}`))
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := obj.String("a"); s != "2" {
		t.Errorf("a = %q", s)
	}
}

func TestEmptyInputIsEmptyObject(t *testing.T) {
	for _, in := range []string{"", "  \n", "{}", " { } "} {
		obj, err := Parse([]byte(in))
		if err != nil || len(obj.Members) != 0 {
			t.Errorf("Parse(%q) = %+v, %v", in, obj, err)
		}
	}
}

func TestSyntaxErrors(t *testing.T) {
	bad := []string{
		`[]`, `"s"`, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{"a":1} x`, `{a:1}`,
		`{"a":01}`, `{"a":1.}`, `{"a":-}`, `{"a":1e}`, `{"a":"x}`, `{"a":"\x"}`,
		`{"a":"\u12"}`, "{\"a\":\"\x01\"}", "{\"a\":\"\xff\"}", `{"a":tru}`,
		`{"a":[1,]}`, `{"a":{"b" 1}}`, `{"a":1e999}`,
		`{"a":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`,
	}
	for _, in := range bad {
		_, err := Parse([]byte(in))
		var perr *Error
		if !errors.Is(err, ErrSyntax) || !errors.As(err, &perr) {
			t.Errorf("Parse(%q) error = %v, want a syntax error", in, err)
		}
	}
}

func TestErrorNamesOffset(t *testing.T) {
	_, err := Parse([]byte(`{"a": 1, "b" 2}`))
	if err == nil || !strings.Contains(err.Error(), "offset 13") {
		t.Errorf("error = %v, want offset 13", err)
	}
}
