package main

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
)

type vector struct {
	Name, Note, Op, Direction, Hex, Reason string
	Decoded                                any
}

func loadVectors(t *testing.T) (valid, invalid map[string]vector, order []string) {
	t.Helper()
	raw, err := os.ReadFile("../../protocol/vectors/operator.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct{ Vectors, Invalid []vector }
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	valid, invalid = map[string]vector{}, map[string]vector{}
	for _, v := range file.Vectors {
		valid[v.Name] = v
		order = append(order, v.Name)
	}
	for _, v := range file.Invalid {
		invalid[v.Name] = v
	}
	return valid, invalid, order
}

func unhex(t *testing.T, s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// jsonForm turns a decoded msgpack value into the vectors' JSON form (bin as {"$bin": base64}, numbers float64).
func jsonForm(v any) any {
	switch x := v.(type) {
	case []byte:
		return map[string]any{"$bin": base64.StdEncoding.EncodeToString(x)}
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonForm(e)
		}
		return out
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			out[k] = jsonForm(e)
		}
		return out
	}
	if f, _, ok := num(v); ok {
		return f
	}
	return v
}

func TestVectorsDecode(t *testing.T) {
	valid, _, order := loadVectors(t)
	for _, name := range order {
		v := valid[name]
		r := bytes.NewReader(unhex(t, v.Hex))
		m, err := ReadFrame(r)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if _, err := ReadFrame(r); err != io.EOF {
			t.Errorf("%s: not exactly one frame: %v", name, err)
		}
		if got := jsonForm(m); !reflect.DeepEqual(got, v.Decoded) {
			t.Errorf("%s:\n got %#v\nwant %#v", name, got, v.Decoded)
		}
		// What we write decodes to the same map (our encoder is neither "ts" nor "compact" byte for byte).
		var buf bytes.Buffer
		if err := WriteFrame(&buf, m); err != nil {
			t.Fatal(err)
		}
		if again, err := ReadFrame(&buf); err != nil || !reflect.DeepEqual(jsonForm(again), v.Decoded) {
			t.Errorf("%s: re-encoded frame differs: %v", name, err)
		}
	}
}

func TestInvalidFramesAreRefused(t *testing.T) {
	_, invalid, _ := loadVectors(t)
	for name, v := range invalid {
		_, err := ReadFrame(bytes.NewReader(unhex(t, v.Hex)))
		if err == nil || err == io.EOF {
			t.Errorf("%s: accepted (%v)", name, err)
		} else if !strings.Contains(err.Error(), v.Reason) {
			t.Errorf("%s: %q does not name %q", name, err, v.Reason)
		}
	}
}

func TestMalformedBatchesAreRefused(t *testing.T) {
	raw, err := os.ReadFile("../../protocol/vectors/malformed.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct{ Vectors []vector }
	json.Unmarshal(raw, &file)
	for _, v := range file.Vectors {
		if _, _, err := DecodeBatch("events", unhex(t, v.Hex)); err == nil || !strings.Contains(err.Error(), v.Reason) {
			t.Errorf("malformed %s: %v, want %q", v.Name, err, v.Reason)
		}
	}
	raw, _ = os.ReadFile("../../protocol/vectors/batches.json")
	json.Unmarshal(raw, &file)
	for _, v := range file.Vectors {
		if _, _, err := DecodeBatch("events", unhex(t, v.Hex)); err != nil {
			t.Errorf("batch %s: %v", v.Name, err)
		}
	}
}

// session drives an operator through a pipe pair, as a worker does.
type session struct {
	t    *testing.T
	in   *os.File // worker -> operator
	out  *os.File // operator -> worker
	done chan error
}

func start(t *testing.T, comp *Computation) (*session, map[string]any) {
	inR, inW, _ := os.Pipe()
	outR, outW, _ := os.Pipe()
	s := &session{t, inW, outR, make(chan error, 1)}
	go func() { s.done <- Serve(comp, inR, outW); outW.Close() }()
	hello, err := ReadFrame(outR)
	if err != nil {
		t.Fatal(err)
	}
	return s, hello
}

// send writes a frame (raw bytes, e.g. a vector) and returns the reply in JSON form.
func (s *session) send(frame []byte) map[string]any {
	s.t.Helper()
	if _, err := s.in.Write(frame); err != nil {
		s.t.Fatal(err)
	}
	reply, err := ReadFrame(s.out)
	if err != nil {
		s.t.Fatal(err)
	}
	return jsonForm(reply).(map[string]any)
}

func without(m map[string]any, keys ...string) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	for _, k := range keys {
		delete(out, k)
	}
	return out
}

func TestWordLengthsSession(t *testing.T) {
	valid, _, _ := loadVectors(t)
	s, hello := start(t, wordLengths(0))
	if want := valid["hello-bare-istream"].Decoded; !reflect.DeepEqual(jsonForm(hello), want) {
		t.Fatalf("hello %v, want %v", hello, want)
	}
	frame := func(name string) []byte { return unhex(t, valid[name].Hex) }
	want := func(name string) map[string]any { return valid[name].Decoded.(map[string]any) }

	if got := s.send(frame("init-empty")); !reflect.DeepEqual(without(got, "busyMs"), without(want("completion-empty"), "busyMs")) {
		t.Errorf("init-empty: %v", got)
	}
	got := s.send(frame("init-with-state-and-timers"))
	if got["stateKeys"] != 5.0 || got["timers"] != 2.0 || got["nextTimerAt"] != want("init-with-state-and-timers")["timers"].([]any)[0].([]any)[1] {
		t.Errorf("init-with-state-and-timers: %v", got)
	}
	if got := s.send(frame("snapshot-all")); !reflect.DeepEqual(asMaps(got), asMaps(want("snapshot-reply-all"))) {
		t.Errorf("snapshot-all: %v", got)
	}
	if got := s.send(frame("snapshot-partitions")); !reflect.DeepEqual(asMaps(got), asMaps(want("snapshot-reply-partitions"))) {
		t.Errorf("snapshot-partitions: %v", got)
	}
	// Two batches: "hello" for key k, and of mixed-batch only sensor-2's "offline" is a str.
	got = s.send(frame("activate-two-batches"))
	exp := want("completion-outputs")
	for _, k := range []string{"outputs", "records", "batches", "failures"} {
		if !reflect.DeepEqual(got[k], exp[k]) {
			t.Errorf("activate-two-batches %s: %v, want %v", k, got[k], exp[k])
		}
	}
	// Both timers are due: processTimer resets the totals of "a" and "user-42".
	got = s.send(frame("activate-timers-only"))
	if got["stateKeys"] != 5.0 || got["timers"] != 0.0 || got["nextTimerAt"] != nil || len(got["logs"].([]any)) != 2 {
		t.Errorf("activate-timers-only: %v", got)
	}
	got = s.send(frame("activate-undecodable-batch"))
	exp = want("completion-undecodable-batch")
	for _, k := range []string{"records", "batches", "failures"} {
		if !reflect.DeepEqual(got[k], exp[k]) {
			t.Errorf("activate-undecodable-batch %s: %v, want %v", k, got[k], exp[k])
		}
	}
	if got := s.send(frame("destroy")); got["op"] != "completion" || got["id"] != 8.0 {
		t.Errorf("destroy: %v", got)
	}
	if err := <-s.done; err != nil {
		t.Fatal(err)
	}
}

// asMaps turns a snapshot reply's [[key, value], ...] lists into maps: the order of entries is not specified.
func asMaps(m map[string]any) map[string]any {
	out := without(m)
	for _, k := range []string{"state", "timers"} {
		kv := map[string]any{}
		for _, p := range m[k].([]any) {
			kv[p.([]any)[0].(string)] = p.([]any)[1]
		}
		out[k] = kv
	}
	return out
}

func TestStopOnFailure(t *testing.T) {
	valid, _, _ := loadVectors(t)
	seen := 0
	comp := &Computation{
		Name: "failing", Ostreams: []any{"word-lengths"},
		ProcessRecord: func(ctx *Context, r Record) error {
			if seen++; seen == 2 {
				return errors.New("bad value")
			}
			ctx.Set(r.Key, 1)
			ctx.Produce("word-lengths", r.Key, map[string]any{"bytes": []byte{0, 255}, "note": nil})
			return nil
		},
	}
	s, _ := start(t, comp)
	s.send(unhex(t, valid["init-empty"].Hex))
	got := s.send(unhex(t, valid["activate-stop-on-failure"].Hex))
	if want := valid["completion-stopped"].Decoded.(map[string]any); !reflect.DeepEqual(without(got, "busyMs"), without(want, "busyMs")) {
		t.Errorf("stop on failure:\n got %v\nwant %v", got, want)
	}
	s.in.Close() // end of file on fd 3: the operator exits
	if err := <-s.done; err != nil {
		t.Fatal(err)
	}
}

func TestUnknownOpGetsAnErrorReply(t *testing.T) {
	s, _ := start(t, wordLengths(0))
	var buf bytes.Buffer
	WriteFrame(&buf, map[string]any{"op": "reticulate", "id": 3})
	if got := s.send(buf.Bytes()); got["op"] != "error" || got["id"] != 3.0 {
		t.Errorf("unknown op: %v", got)
	}
	s.in.Close()
	<-s.done
}

// TestProcess runs the real program with fds 3 and 4, as a worker starts it.
func TestProcess(t *testing.T) {
	if os.Getenv("GO_OPERATOR_CHILD") == "1" {
		main()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestProcess$")
	inR, inW, _ := os.Pipe()
	outR, outW, _ := os.Pipe()
	cmd.ExtraFiles = []*os.File{inR, outW} // fds 3 and 4
	cmd.Env = append(os.Environ(), "GO_OPERATOR_CHILD=1", "TOPO_OPERATOR_PROTOCOL=1", "TOPO_OPERATOR_IN=3", "TOPO_OPERATOR_OUT=4")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	inR.Close()
	outW.Close()
	s := &session{t, inW, outR, nil}
	if hello, err := ReadFrame(outR); err != nil || hello["op"] != "hello" {
		t.Fatalf("hello: %v %v", hello, err)
	}
	var buf bytes.Buffer
	WriteFrame(&buf, map[string]any{"op": "init", "id": 1, "instance": map[string]any{"index": 0, "count": 1, "id": "wl-0"}, "state": []any{}, "timers": []any{}, "runInit": true})
	s.send(buf.Bytes())
	var batch bytes.Buffer
	WriteFrame(&batch, map[string]any{"v": 1, "src": "p1", "stream": "words", "bseq": 1, "recs": []any{
		[]any{"k", "héllo", int64(1700000000000), 1}, []any{"k", "go", int64(1700000000001), 2}, []any{"j", 7, int64(1700000000002), 3, nil},
	}})
	buf.Reset()
	WriteFrame(&buf, map[string]any{"op": "activate", "id": 2, "now": int64(1700000000010), "timers": false,
		"batches": []any{map[string]any{"stream": "words", "data": batch.Bytes()[4:]}}})
	got := s.send(buf.Bytes())
	want := []any{
		[]any{"word-lengths", "k", map[string]any{"word": "héllo", "length": 5.0, "total": 1.0}},
		[]any{"word-lengths", "k", map[string]any{"word": "go", "length": 2.0, "total": 2.0}},
	}
	if !reflect.DeepEqual(got["outputs"], want) || got["records"] != 3.0 || got["stateKeys"] != 1.0 {
		t.Errorf("activate: %v", got)
	}
	inW.Close() // the worker goes away: the operator exits
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}

// A timer whose key a callback of the same round set again does not fire in that round: the new one replaces it.
func TestTimerSetAgainInTheRoundIsSkipped(t *testing.T) {
	var fired []string
	comp := &Computation{Name: "timers", ProcessTimer: func(ctx *Context, key string, at int64) error {
		fired = append(fired, key)
		if key == "a" {
			ctx.SetTimer("b", 25)
		}
		return nil
	}}
	s, _ := start(t, comp)
	frame := func(m map[string]any) []byte {
		var buf bytes.Buffer
		WriteFrame(&buf, m)
		return buf.Bytes()
	}
	s.send(frame(map[string]any{"op": "init", "id": 1, "instance": map[string]any{"index": 0, "count": 1, "id": "t-0"},
		"state": []any{}, "timers": []any{[]any{"b", 20}, []any{"a", 10}, []any{"c", 99}}, "runInit": true}))
	got := s.send(frame(map[string]any{"op": "activate", "id": 2, "now": 30, "timers": true, "batches": []any{}}))
	if !reflect.DeepEqual(fired, []string{"a"}) || got["timers"] != 2.0 || got["nextTimerAt"] != 25.0 {
		t.Errorf("first round fired %v: %v", fired, got)
	}
	got = s.send(frame(map[string]any{"op": "activate", "id": 3, "now": 30, "timers": true, "batches": []any{}}))
	if !reflect.DeepEqual(fired, []string{"a", "b"}) || got["timers"] != 1.0 || got["nextTimerAt"] != 99.0 {
		t.Errorf("second round fired %v: %v", fired, got)
	}
	s.in.Close()
	<-s.done
}
