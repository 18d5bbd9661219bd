// word-lengths: a topo computation in Go, run by a topo worker as a hosted
// operator (PROTOCOL.md, "Hosted operators"). It reads the stream `words`
// (shuffle) and, for each record whose value is a str, produces on
// `word-lengths` (same key) {"word", "length" (in runes), "total"}: the running
// count of words seen for that key, kept in keyed state.
//
// With WORD_LENGTHS_RESET_MS=<ms> each key's total is also reset that long
// after its last word (a keyed timer), which shows timers surviving a swap.
package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"unicode/utf8"
)

func wordLengths(resetMs int64) *Computation {
	return &Computation{
		Name:     "word-lengths",
		Istreams: []any{"words"},
		Ostreams: []any{"word-lengths"},
		ProcessRecord: func(ctx *Context, r Record) error {
			word, ok := r.Value.(string)
			if !ok {
				return nil // only str values count as words
			}
			total := int64(0)
			if v, ok := ctx.Get(r.Key); ok {
				total, _ = asInt(v)
			}
			total++
			ctx.Set(r.Key, total)
			ctx.Produce("word-lengths", r.Key, map[string]any{"word": word, "length": utf8.RuneCountInString(word), "total": total})
			if resetMs > 0 {
				ctx.SetTimer(r.Key, ctx.Now+resetMs)
			}
			return nil
		},
		ProcessTimer: func(ctx *Context, key string, atMs int64) error {
			ctx.Delete(key)
			ctx.Log("debug", "total reset", map[string]any{"key": key, "at": atMs})
			return nil
		},
	}
}

// Serve writes the hello frame, then answers requests until destroy or the end of in.
func Serve(comp *Computation, in io.Reader, out io.Writer) error {
	hello := map[string]any{
		"op": "hello", "protocol": 1, "sdk": "topo-go-example 0.1.0",
		"metadata": map[string]any{"name": comp.Name, "istreams": comp.Istreams, "ostreams": comp.Ostreams},
	}
	if err := WriteFrame(out, hello); err != nil {
		return err
	}
	op := NewOperator(comp)
	for {
		req, err := ReadFrame(in)
		if err == io.EOF {
			return nil // the worker closed fd 3 (or died): exit
		}
		if err != nil {
			return fmt.Errorf("bad request frame: %w", err)
		}
		reply, done := op.Handle(req)
		if err := WriteFrame(out, reply); err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

func fd(env string, def int) *os.File {
	n, err := strconv.Atoi(os.Getenv(env))
	if err != nil {
		n = def
	}
	return os.NewFile(uintptr(n), env)
}

func main() {
	if v := os.Getenv("TOPO_OPERATOR_PROTOCOL"); v != "" && v != "1" {
		fmt.Fprintf(os.Stderr, "word-lengths: I speak operator protocol 1, the worker asks for %s\n", v)
		os.Exit(2)
	}
	resetMs, _ := strconv.ParseInt(os.Getenv("WORD_LENGTHS_RESET_MS"), 10, 64)
	if err := Serve(wordLengths(resetMs), fd("TOPO_OPERATOR_IN", 3), fd("TOPO_OPERATOR_OUT", 4)); err != nil {
		fmt.Fprintln(os.Stderr, "word-lengths:", err, "(run me with topo: topo deploy --cmd ...; I talk on fds 3 and 4)")
		os.Exit(1)
	}
}
