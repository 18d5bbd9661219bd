// The hosted-operator protocol v1 (PROTOCOL.md, "Hosted operators"), written
// from PROTOCOL.md alone: length-prefixed msgpack frames, requests on fd 3,
// the hello and one reply per request on fd 4.
package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

const maxFrame = 256 << 20 // 1 <= N <= 256 MiB

// Record is what ProcessRecord gets: one record of a batch envelope.
type Record struct {
	Stream, Src, Key, Trace string
	Value                   any
	Ts, Seq                 int64
}

// Computation is user code: metadata and callbacks (nil callbacks do nothing).
// A callback fails by returning an error or panicking.
type Computation struct {
	Name               string
	Istreams, Ostreams []any // an istream is a str (shuffle) or map{"stream", "grouping"}; ostreams are str
	Init, Destroy      func(*Context) error
	ProcessRecord      func(*Context, Record) error
	ProcessTimer       func(ctx *Context, key string, atMs int64) error
}

// Context is the computation's handle on keyed state, timers, output and logs.
type Context struct {
	op                      *Operator
	Now                     int64 // the worker's clock (activate), else the local clock
	Index, Count            int64
	InstanceID              string
	outputs, logs, failures []any
	setThisRound            map[string]bool // timer keys set by a callback of this request
	busy                    time.Duration
	records                 int
	stopped                 bool
}

func (c *Context) Get(key string) (any, bool) { v, ok := c.op.state[key]; return v, ok }
func (c *Context) Set(key string, value any)  { c.op.state[key] = value }
func (c *Context) Delete(key string)          { delete(c.op.state, key) }
func (c *Context) SetTimer(key string, atMs int64) {
	c.op.timers[key], c.setThisRound[key] = atMs, true
}
func (c *Context) ClearTimer(key string) { delete(c.op.timers, key) }
func (c *Context) Log(level, msg string, fields map[string]any) {
	entry := []any{level, msg}
	if fields != nil {
		entry = append(entry, fields)
	}
	c.logs = append(c.logs, entry)
}
func (c *Context) Produce(stream, key string, value any) {
	if !slices.Contains(c.op.comp.Ostreams, any(stream)) {
		panic(fmt.Errorf("%q is not an ostream of %s", stream, c.op.comp.Name))
	}
	c.outputs = append(c.outputs, []any{stream, key, value})
}

// call runs one callback, recording a failure {where, error, ...at} when it
// returns an error or panics. It reports whether the callback succeeded.
func (c *Context) call(where string, at map[string]any, fn func() error) (ok bool) {
	start := time.Now()
	defer func() {
		c.busy += time.Since(start)
		if r := recover(); r != nil {
			ok = c.fail(where, fmt.Sprint(r), at)
		}
	}()
	if err := fn(); err != nil {
		return c.fail(where, err.Error(), at)
	}
	return true
}

func (c *Context) fail(where, msg string, at map[string]any) bool {
	if len(msg) > 4096 { // at most 4 KiB, cut on a rune boundary
		msg = strings.ToValidUTF8(msg[:4096], "")
	}
	f := map[string]any{"where": where, "error": msg}
	for k, v := range at {
		f[k] = v
	}
	c.failures = append(c.failures, f)
	return false
}

// Operator holds one instance's keyed state and timers (key -> atMs).
type Operator struct {
	comp     *Computation
	state    map[string]any
	timers   map[string]int64
	instance map[string]any
}

func NewOperator(comp *Computation) *Operator {
	return &Operator{comp: comp, state: map[string]any{}, timers: map[string]int64{}}
}

// ReadFrame reads one frame: a 4-byte big-endian length, then one plain msgpack map with a str op.
// It returns io.EOF at a clean end of the stream, and another error for anything that must be refused.
func ReadFrame(r io.Reader) (map[string]any, error) {
	var head [4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return nil, errors.New("truncated: the stream ends inside a length prefix")
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(head[:])
	if n < 1 || n > maxFrame {
		return nil, fmt.Errorf("frame length %d is not in 1..%d", n, maxFrame)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, fmt.Errorf("truncated: a frame of %d bytes ends early: %w", n, err)
	}
	v, err := decodePlain(body)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("frame is not a map")
	}
	if _, ok := m["op"].(string); !ok {
		return nil, errors.New("frame.op must be a string")
	}
	return m, nil
}

func WriteFrame(w io.Writer, m map[string]any) error {
	var buf bytes.Buffer
	buf.Write([]byte{0, 0, 0, 0})
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	if err := enc.Encode(m); err != nil {
		return err
	}
	b := buf.Bytes()
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	_, err := w.Write(b)
	return err
}

// No extension types (PROTOCOL.md, msgpack rules): without the timestamp
// (-1) the library refuses every extension type as unknown.
func init() { msgpack.UnregisterExt(-1) }

// decodePlain decodes exactly one plain msgpack value; maps get str keys.
func decodePlain(b []byte) (any, error) {
	r := bytes.NewReader(b)
	var v any
	if err := msgpack.NewDecoder(r).Decode(&v); err != nil {
		return nil, fmt.Errorf("not msgpack: %w", err)
	}
	if r.Len() > 0 {
		return nil, fmt.Errorf("not msgpack: %d trailing bytes", r.Len())
	}
	return v, nil
}

// num reads any msgpack number (any int width, float32, float64); ok is false
// for anything else and for NaN and ±Inf; integral reports a whole value.
func num(v any) (f float64, integral, ok bool) {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return float64(rv.Int()), true, true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return float64(rv.Uint()), true, true
	case reflect.Float32, reflect.Float64:
		f = rv.Float()
		ok = !math.IsNaN(f) && !math.IsInf(f, 0)
		return f, ok && f == math.Trunc(f), ok
	}
	return 0, false, false
}

func asInt(v any) (int64, bool) {
	f, integral, ok := num(v)
	return int64(f), ok && integral
}

var srcID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// DecodeBatch decodes a batch envelope with the checks of "What a consumer checks", in order.
func DecodeBatch(stream string, data []byte) (string, []Record, error) {
	raw, err := decodePlain(data)
	if err != nil {
		return "", nil, err
	}
	b, _ := raw.(map[string]any)
	v, vInt, _ := num(b["v"])
	src, _ := b["src"].(string)
	_, streamOK := b["stream"].(string)
	bseq, bseqInt, _ := num(b["bseq"])
	list, recsOK := b["recs"].([]any)
	switch {
	case b == nil:
		err = errors.New("batch must be a msgpack map")
	case !vInt || v != 1:
		err = fmt.Errorf("unsupported protocol version %v (expected 1)", b["v"])
	case src == "":
		err = errors.New("batch.src must be a non-empty string")
	case !srcID.MatchString(src):
		err = errors.New("batch.src must be a subject-safe id")
	case !streamOK:
		err = errors.New("batch.stream must be a string")
	case !bseqInt || bseq < 0:
		err = errors.New("batch.bseq must be an unsigned integer")
	case !recsOK:
		err = errors.New("batch.recs must be an array")
	}
	recs := make([]Record, len(list))
	for i := 0; i < len(list) && err == nil; i++ {
		a, _ := list[i].([]any)
		at := func(k int) any {
			if k < len(a) {
				return a[k]
			}
			return nil
		}
		key, keyOK := at(0).(string)
		ts, _, tsOK := num(at(2))
		seq, _, seqOK := num(at(3))
		trace, traceOK := at(4).(string)
		recs[i] = Record{Stream: stream, Src: src, Key: key, Value: at(1), Ts: int64(ts), Seq: int64(seq), Trace: trace}
		switch {
		case len(a) < 4 || len(a) > 5:
			err = fmt.Errorf("recs[%d] must be an array of 4 or 5 items", i)
		case !keyOK:
			err = fmt.Errorf("recs[%d].key must be a string", i)
		case !tsOK:
			err = fmt.Errorf("recs[%d].ts must be a number", i)
		case !seqOK:
			err = fmt.Errorf("recs[%d].seq must be a number", i)
		case at(4) != nil && !traceOK:
			err = fmt.Errorf("recs[%d].trace must be a string or nil", i)
		}
	}
	return src, recs, err
}

// pairs reads [[key, value], ...] (state) or [[key, atMs], ...] (timers) into put.
func pairs(v any, what string, put func(key string, value any) bool) error {
	list, ok := v.([]any)
	for i := 0; ok && i < len(list); i++ {
		p, _ := list[i].([]any)
		if len(p) != 2 {
			return fmt.Errorf("%s[%d] must be [key, value]", what, i)
		}
		if key, isStr := p[0].(string); !isStr || !put(key, p[1]) {
			return fmt.Errorf("%s[%d] must be [str key, value] (timers: an integer atMs)", what, i)
		}
	}
	if !ok {
		return fmt.Errorf("%s must be an array", what)
	}
	return nil
}

func (op *Operator) context(now int64) *Context {
	c := &Context{op: op, Now: now, setThisRound: map[string]bool{}, outputs: []any{}, failures: []any{}}
	c.Index, _ = asInt(op.instance["index"])
	c.Count, _ = asInt(op.instance["count"])
	c.InstanceID, _ = op.instance["id"].(string)
	return c
}

// Handle answers one request; done is true after destroy.
func (op *Operator) Handle(req map[string]any) (reply map[string]any, done bool) {
	id := req["id"]
	reply, err := op.handle(req)
	if err != nil {
		return map[string]any{"op": "error", "id": id, "error": err.Error()}, false
	}
	reply["id"] = id
	return reply, req["op"] == "destroy"
}

func (op *Operator) handle(req map[string]any) (map[string]any, error) {
	now := time.Now().UnixMilli()
	if n, ok := asInt(req["now"]); ok {
		now = n
	}
	c := op.context(now)
	var batches []any
	switch req["op"] {
	case "init":
		op.instance, _ = req["instance"].(map[string]any)
		state, timers := map[string]any{}, map[string]int64{}
		err := errors.Join(pairs(req["state"], "state", func(k string, v any) bool { state[k] = v; return true }),
			pairs(req["timers"], "timers", func(k string, v any) (ok bool) { timers[k], ok = asInt(v); return ok }))
		if err != nil {
			return nil, err
		}
		op.state, op.timers, c = state, timers, op.context(now)
		if req["runInit"] == true && op.comp.Init != nil {
			c.call("init", nil, func() error { return op.comp.Init(c) })
		}
	case "activate":
		batches = op.activate(c, req)
	case "destroy":
		if op.comp.Destroy != nil {
			c.call("destroy", nil, func() error { return op.comp.Destroy(c) })
		}
	case "snapshot":
		return op.snapshot(req["partitions"])
	default:
		return nil, fmt.Errorf("unknown op %q", req["op"])
	}
	return op.completion(c, batches), nil
}

func (op *Operator) activate(c *Context, req map[string]any) []any {
	stop := req["stopOnFailure"] == true
	if req["timers"] == true {
		due := pick(op.timers, func(k string) bool { return op.timers[k] <= c.Now }) // [[key, atMs]] by key
		sort.SliceStable(due, func(i, j int) bool { return due[i].([]any)[1].(int64) < due[j].([]any)[1].(int64) })
		for _, t := range due {
			key, at := t.([]any)[0].(string), t.([]any)[1].(int64)
			if c.stopped || c.setThisRound[key] {
				continue // a callback of this round set the key again: the new timer replaces it
			}
			delete(op.timers, key)
			if op.comp.ProcessTimer != nil {
				ok := c.call("processTimer", map[string]any{"timer": key}, func() error { return op.comp.ProcessTimer(c, key, at) })
				c.stopped = !ok && stop
			}
		}
	}
	list, _ := req["batches"].([]any)
	items := make([]any, len(list))
	for i, b := range list {
		m, _ := b.(map[string]any)
		stream, _ := m["stream"].(string)
		data, _ := m["data"].([]byte)
		src, recs, err := DecodeBatch(stream, data)
		if err != nil { // items[i] stays nil
			c.fail("decode", err.Error(), map[string]any{"batch": i})
			continue
		}
		handed := 0
		for j := 0; j < len(recs) && !c.stopped && op.comp.ProcessRecord != nil; j++ {
			r := recs[j]
			handed++
			c.records++
			ok := c.call("processRecord", map[string]any{"batch": i, "index": j}, func() error { return op.comp.ProcessRecord(c, r) })
			c.stopped = !ok && stop
		}
		items[i] = []any{src, handed} // after a stop: the batches not reached, with 0 records
	}
	return items
}

func (op *Operator) completion(c *Context, batches []any) map[string]any {
	if batches == nil {
		batches = []any{}
	}
	var next any
	for _, at := range op.timers {
		if n, ok := next.(int64); !ok || at < n {
			next = at
		}
	}
	m := map[string]any{
		"op": "completion", "outputs": c.outputs, "records": c.records, "batches": batches, "failures": c.failures,
		"nextTimerAt": next, "stateKeys": len(op.state), "timers": len(op.timers), "busyMs": float64(c.busy.Microseconds()) / 1000,
	}
	if len(c.logs) > 0 {
		m["logs"] = c.logs
	}
	if c.stopped {
		m["stopped"] = true
	}
	return m
}

func partitionOf(key string) int64 {
	h := uint32(0x811c9dc5)
	for _, b := range []byte(key) {
		h = (h ^ uint32(b)) * 0x01000193
	}
	return int64(h % 32)
}

// snapshot replies with the state and timers, all or those of the given partitions, sorted by key.
func (op *Operator) snapshot(partitions any) (map[string]any, error) {
	keep := func(string) bool { return true }
	if partitions != nil {
		list, ok := partitions.([]any)
		if !ok {
			return nil, errors.New("partitions must be an array")
		}
		set := map[int64]bool{}
		for _, p := range list {
			n, _ := asInt(p)
			set[n] = true
		}
		keep = func(key string) bool { return set[partitionOf(key)] }
	}
	return map[string]any{"op": "snapshot", "state": pick(op.state, keep), "timers": pick(op.timers, keep)}, nil
}

// pick returns [[key, value], ...] of the entries whose key passes keep, sorted by key.
func pick[V any](m map[string]V, keep func(string) bool) []any {
	keys := make([]string, 0, len(m))
	for k := range m {
		if keep(k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := make([]any, len(keys))
	for i, k := range keys {
		out[i] = []any{k, m[k]}
	}
	return out
}
