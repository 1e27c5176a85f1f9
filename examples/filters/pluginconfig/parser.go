package pluginconfig

import (
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth bounds nesting inside skipped objects and arrays so hostile
// input cannot exhaust the stack.
const maxDepth = 64

type parser struct {
	s string
	i int
}

func (p *parser) fail(msg string) error { return &Error{Offset: p.i, Msg: msg} }

func (p *parser) space() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

// object decodes an object and its scalar members.
func (p *parser) object() (Object, error) {
	var obj Object
	if p.peek() != '{' {
		return obj, p.fail("expected an object")
	}
	p.i++
	p.space()
	if p.peek() == '}' {
		p.i++
		return obj, nil
	}
	for {
		p.space()
		name, err := p.str()
		if err != nil {
			return obj, err
		}
		p.space()
		if p.peek() != ':' {
			return obj, p.fail("expected ':'")
		}
		p.i++
		p.space()
		v, err := p.value(0)
		if err != nil {
			return obj, err
		}
		obj.Members = append(obj.Members, Member{Name: name, Value: v})
		p.space()
		switch p.peek() {
		case ',':
			p.i++
		case '}':
			p.i++
			return obj, nil
		default:
			return obj, p.fail("expected ',' or '}'")
		}
	}
}

// value reads any JSON value; objects and arrays are validated and kept
// as raw text.
func (p *parser) value(depth int) (Value, error) {
	start := p.i
	switch c := p.peek(); {
	case c == '"':
		s, err := p.str()
		return Value{Kind: KindString, Raw: p.s[start:p.i], str: s}, err
	case c == '{' || c == '[':
		if err := p.skipComposite(depth); err != nil {
			return Value{}, err
		}
		kind := KindObject
		if c == '[' {
			kind = KindArray
		}
		return Value{Kind: kind, Raw: p.s[start:p.i]}, nil
	case c == '-' || (c >= '0' && c <= '9'):
		err := p.number()
		return Value{Kind: KindNumber, Raw: p.s[start:p.i]}, err
	}
	for _, lit := range [...]struct {
		text string
		kind Kind
	}{{"true", KindBool}, {"false", KindBool}, {"null", KindNull}} {
		if strings.HasPrefix(p.s[p.i:], lit.text) {
			p.i += len(lit.text)
			return Value{Kind: lit.kind, Raw: lit.text}, nil
		}
	}
	return Value{}, p.fail("expected a value")
}

// skipComposite validates an object or array without decoding it.
func (p *parser) skipComposite(depth int) error {
	if depth >= maxDepth {
		return p.fail("nesting too deep")
	}
	open := p.s[p.i]
	closing := byte('}')
	if open == '[' {
		closing = ']'
	}
	p.i++
	p.space()
	if p.peek() == closing {
		p.i++
		return nil
	}
	for {
		p.space()
		if open == '{' {
			if _, err := p.str(); err != nil {
				return err
			}
			p.space()
			if p.peek() != ':' {
				return p.fail("expected ':'")
			}
			p.i++
			p.space()
		}
		if _, err := p.value(depth + 1); err != nil {
			return err
		}
		p.space()
		switch p.peek() {
		case ',':
			p.i++
		case closing:
			p.i++
			return nil
		default:
			return p.fail("expected ',' or '" + string(closing) + "'")
		}
	}
}

// number checks the JSON number grammar; strconv does the conversion
// later, on demand.
func (p *parser) number() error {
	start := p.i
	if p.peek() == '-' {
		p.i++
	}
	switch {
	case p.peek() == '0':
		p.i++
	case p.peek() >= '1' && p.peek() <= '9':
		p.digits()
	default:
		return p.fail("invalid number")
	}
	if p.peek() == '.' {
		p.i++
		if p.digits() == 0 {
			return p.fail("invalid number")
		}
	}
	if c := p.peek(); c == 'e' || c == 'E' {
		p.i++
		if c := p.peek(); c == '+' || c == '-' {
			p.i++
		}
		if p.digits() == 0 {
			return p.fail("invalid number")
		}
	}
	if _, err := strconv.ParseFloat(p.s[start:p.i], 64); err != nil {
		p.i = start
		return p.fail("number out of range")
	}
	return nil
}

func (p *parser) digits() int {
	n := 0
	for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		p.i++
		n++
	}
	return n
}

// str decodes a JSON string, escapes included.
func (p *parser) str() (string, error) {
	if p.peek() != '"' {
		return "", p.fail("expected a string")
	}
	p.i++
	var b strings.Builder
	for {
		if p.i >= len(p.s) {
			return "", p.fail("unterminated string")
		}
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return b.String(), nil
		case c == '\\':
			if err := p.escape(&b); err != nil {
				return "", err
			}
		case c < 0x20:
			return "", p.fail("control character in string")
		default:
			r, size := utf8.DecodeRuneInString(p.s[p.i:])
			if r == utf8.RuneError && size == 1 {
				return "", p.fail("invalid UTF-8 in string")
			}
			b.WriteString(p.s[p.i : p.i+size])
			p.i += size
		}
	}
}

var simpleEscapes = map[byte]byte{
	'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t',
}

// escape decodes one backslash escape at p.i.
func (p *parser) escape(b *strings.Builder) error {
	p.i++ // the backslash
	c := p.peek()
	if r, ok := simpleEscapes[c]; ok {
		b.WriteByte(r)
		p.i++
		return nil
	}
	if c != 'u' {
		return p.fail("invalid escape")
	}
	r, err := p.hex4()
	if err != nil {
		return err
	}
	if utf16.IsSurrogate(r) && strings.HasPrefix(p.s[p.i:], `\u`) {
		save := p.i
		p.i++
		r2, err := p.hex4()
		if err != nil {
			return err
		}
		if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
			r = dec
		} else {
			p.i = save
		}
	}
	b.WriteRune(r) // a lone surrogate becomes U+FFFD
	return nil
}

// hex4 reads "uXXXX" at p.i.
func (p *parser) hex4() (rune, error) {
	if p.i+5 > len(p.s) {
		return 0, p.fail("short \\u escape")
	}
	n, err := strconv.ParseUint(p.s[p.i+1:p.i+5], 16, 32)
	if err != nil {
		return 0, p.fail("invalid \\u escape")
	}
	p.i += 5
	return rune(n), nil
}
