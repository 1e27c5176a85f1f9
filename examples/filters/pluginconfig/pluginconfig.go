// Package pluginconfig reads the JSON plugin configuration of a filter
// without encoding/json, fmt or os, which pull WASI calls into a Wasm
// module that proxies implement poorly.
//
// It decodes one JSON object. Member values that are strings, numbers,
// booleans or null are decoded; nested objects and arrays are kept as raw
// JSON text that Parse (objects) or Value.Raw can take further.
package pluginconfig

import (
	"errors"
	"strconv"
)

// Kind is the JSON type of a Value.
type Kind int

// The JSON types.
const (
	KindNull Kind = iota
	KindBool
	KindNumber
	KindString
	KindObject
	KindArray
)

// Value is one member value of an Object.
type Value struct {
	Kind Kind
	// Raw is the value's JSON text as it appeared in the input.
	Raw string
	str string // decoded string, for Kind String
}

// Member is one name/value pair of an Object.
type Member struct {
	Name  string
	Value Value
}

// ErrSyntax is wrapped by every parse error.
var ErrSyntax = errors.New("pluginconfig: invalid JSON")

// Error is a parse error at a byte offset of the input.
type Error struct {
	Offset int
	Msg    string
}

// Error describes the problem and where it is.
func (e *Error) Error() string {
	return ErrSyntax.Error() + " at offset " + strconv.Itoa(e.Offset) + ": " + e.Msg
}

// Unwrap lets errors.Is match ErrSyntax.
func (e *Error) Unwrap() error { return ErrSyntax }

// Object holds the members of a JSON object in input order.
type Object struct {
	Members []Member
}

// Parse decodes data, which must hold one JSON object (surrounding
// whitespace allowed). Empty input is an empty object, so a filter
// deployed without configuration gets its defaults.
func Parse(data []byte) (Object, error) {
	p := &parser{s: string(data)}
	p.space()
	if p.i == len(p.s) {
		return Object{}, nil
	}
	obj, err := p.object()
	if err != nil {
		return Object{}, err
	}
	p.space()
	if p.i != len(p.s) {
		return Object{}, p.fail("unexpected data after the object")
	}
	return obj, nil
}

// Get returns the value of member name; when a name repeats the last one
// wins, as in most JSON decoders.
func (o Object) Get(name string) (Value, bool) {
	for i := len(o.Members) - 1; i >= 0; i-- {
		if o.Members[i].Name == name {
			return o.Members[i].Value, true
		}
	}
	return Value{}, false
}

// String returns member name if it is a JSON string.
func (o Object) String(name string) (string, bool) {
	v, ok := o.Get(name)
	if !ok || v.Kind != KindString {
		return "", false
	}
	return v.str, true
}

// Int returns member name if it is a JSON number with an integer value
// that fits int64.
func (o Object) Int(name string) (int64, bool) {
	v, ok := o.Get(name)
	if !ok || v.Kind != KindNumber {
		return 0, false
	}
	n, err := strconv.ParseInt(v.Raw, 10, 64)
	if err == nil {
		return n, true
	}
	// Accept integral values written in float syntax, such as 1e3.
	f, err := strconv.ParseFloat(v.Raw, 64)
	if err != nil || f != float64(int64(f)) {
		return 0, false
	}
	return int64(f), true
}

// Float returns member name if it is a JSON number.
func (o Object) Float(name string) (float64, bool) {
	v, ok := o.Get(name)
	if !ok || v.Kind != KindNumber {
		return 0, false
	}
	f, err := strconv.ParseFloat(v.Raw, 64)
	return f, err == nil
}

// Bool returns member name if it is true or false.
func (o Object) Bool(name string) (bool, bool) {
	v, ok := o.Get(name)
	if !ok || v.Kind != KindBool {
		return false, false
	}
	return v.Raw == "true", true
}

// Object parses member name if it is a JSON object.
func (o Object) Object(name string) (Object, bool, error) {
	v, ok := o.Get(name)
	if !ok || v.Kind != KindObject {
		return Object{}, false, nil
	}
	obj, err := Parse([]byte(v.Raw))
	return obj, true, err
}

// Str returns the decoded text of a String value, and "" for other kinds.
func (v Value) Str() string { return v.str }
