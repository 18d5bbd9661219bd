// The baseline of the Go bench: a hand-written nats.go loop doing the work of the
// word-lengths operator (examples/go-operator) without topo. It decodes each batch
// published on topo.data.words.<p>, counts the words per key in a map, and republishes
// {word, length, total} per record in a batch of its own on topo.data.word-lengths.<p>.
// Prints "ready" once subscribed. Usage: go-relay <nats-url>
package main

import (
	"fmt"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/vmihailenco/msgpack/v5"
)

type batch struct {
	V      int     `msgpack:"v"`
	Src    string  `msgpack:"src"`
	Stream string  `msgpack:"stream"`
	Bseq   int64   `msgpack:"bseq"`
	Recs   [][]any `msgpack:"recs"`
}

func main() {
	nc, err := nats.Connect(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	totals := map[string]int64{}
	var bseq, seq int64
	msgs := make(chan *nats.Msg, 1<<16)
	sub, err := nc.ChanSubscribe("topo.data.words.*", msgs)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	_ = sub.SetPendingLimits(-1, -1)
	_ = nc.Flush()
	fmt.Println("ready")
	for m := range msgs {
		var b batch
		if err := msgpack.Unmarshal(m.Data, &b); err != nil || b.V != 1 {
			continue
		}
		out := make([][]any, 0, len(b.Recs))
		for _, r := range b.Recs {
			if len(r) < 4 {
				continue
			}
			key, _ := r[0].(string)
			word, ok := r[1].(string)
			if !ok {
				continue
			}
			totals[key]++
			seq++
			out = append(out, []any{key, map[string]any{"word": word, "length": utf8.RuneCountInString(word), "total": totals[key]}, r[2], seq})
		}
		bseq++
		data, _ := msgpack.Marshal(map[string]any{"v": 1, "src": "bpoly-go-relay", "stream": "word-lengths", "bseq": bseq, "recs": out})
		p := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
		_ = nc.Publish("topo.data.word-lengths."+p, data)
	}
}
