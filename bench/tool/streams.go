package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

type headerList []string

func (h *headerList) String() string     { return strings.Join(*h, ", ") }
func (h *headerList) Set(v string) error { *h = append(*h, v); return nil }

// streamStats is what one worker saw.
type streamStats struct {
	ttfb    []float64 // ms, request sent → first body byte
	delays  []float64 // ms, mock's write of a chunk → this client's read of it
	total   []float64 // ms, request sent → end of body
	chunks  []int     // stamped chunks seen per stream
	streams int
	errors  int
	bad     map[string]int
}

func runStreams(args []string) {
	fs := flag.NewFlagSet("streams", flag.ExitOnError)
	target := fs.String("url", "", "URL to POST to (loopback only)")
	bodyFile := fs.String("body", "", "file with the JSON request body")
	conc := fs.Int("c", 16, "concurrent streams")
	dur := fs.Duration("d", 5*time.Second, "how long to keep starting streams")
	maxStreams := fs.Int("n", 0, "stop after this many streams (0: no count limit)")
	timeout := fs.Duration("timeout", 30*time.Second, "time limit per stream")
	var headers headerList
	fs.Var(&headers, "H", "extra header 'Name: value' (repeatable)")
	fs.Parse(args)
	u, err := url.Parse(*target)
	if err != nil || !(strings.HasPrefix(u.Hostname(), "127.") || u.Hostname() == "localhost") {
		log.Fatal("-url must be a loopback URL")
	}
	body, err := os.ReadFile(*bodyFile)
	if err != nil {
		log.Fatal(err)
	}
	transport := &http.Transport{MaxIdleConns: *conc * 2, MaxIdleConnsPerHost: *conc * 2, DisableCompression: true}
	client := &http.Client{Transport: transport, Timeout: *timeout}
	deadline := time.Now().Add(*dur)
	var mu sync.Mutex
	started := 0
	take := func() bool {
		mu.Lock()
		defer mu.Unlock()
		if time.Now().After(deadline) || (*maxStreams > 0 && started >= *maxStreams) {
			return false
		}
		started++
		return true
	}
	results := make([]*streamStats, *conc)
	var wg sync.WaitGroup
	t0 := time.Now()
	for w := 0; w < *conc; w++ {
		st := &streamStats{bad: map[string]int{}}
		results[w] = st
		wg.Add(1)
		go func() {
			defer wg.Done()
			for take() {
				oneStream(client, *target, body, headers, st)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0).Seconds()
	all := &streamStats{bad: map[string]int{}}
	for _, st := range results {
		all.ttfb = append(all.ttfb, st.ttfb...)
		all.delays = append(all.delays, st.delays...)
		all.total = append(all.total, st.total...)
		all.chunks = append(all.chunks, st.chunks...)
		all.streams += st.streams
		all.errors += st.errors
		for k, v := range st.bad {
			all.bad[k] += v
		}
	}
	chunksF := make([]float64, len(all.chunks))
	for i, c := range all.chunks {
		chunksF[i] = float64(c)
	}
	out := map[string]any{
		"streams": all.streams, "errors": all.errors, "seconds": elapsed,
		"streams_per_s": float64(all.streams) / elapsed,
		"ttfb_p50_ms":   pct(all.ttfb, 50), "ttfb_p99_ms": pct(all.ttfb, 99),
		"total_p50_ms": pct(all.total, 50), "total_p99_ms": pct(all.total, 99),
		"chunk_delay_p50_ms": pct(all.delays, 50), "chunk_delay_p99_ms": pct(all.delays, 99),
		"chunk_delay_max_ms": pct(all.delays, 100), "chunks_min": pct(chunksF, 0), "chunks_p50": pct(chunksF, 50),
		"error_kinds": all.bad,
	}
	enc := json.NewEncoder(os.Stdout)
	enc.Encode(out)
}

func oneStream(client *http.Client, target string, body []byte, headers headerList, st *streamStats) {
	req, _ := http.NewRequest(http.MethodPost, target, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for _, h := range headers {
		if k, v, ok := strings.Cut(h, ":"); ok {
			req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
		}
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		st.errors++
		st.bad["connect: "+shortErr(err)]++
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		io.Copy(io.Discard, resp.Body)
		st.errors++
		st.bad["status "+strconv.Itoa(resp.StatusCode)]++
		return
	}
	buf := make([]byte, 64<<10)
	var carry []byte
	first := true
	stamped := 0
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			now := time.Now()
			if first {
				st.ttfb = append(st.ttfb, ms(now.Sub(start)))
				first = false
			}
			nowUs := now.UnixMicro()
			data := append(carry, buf[:n]...)
			// every complete "t=<µs>;" marker in what has arrived so far
			last := 0
			for {
				i := bytes.Index(data[last:], []byte("t="))
				if i < 0 {
					break
				}
				i += last
				j := bytes.IndexByte(data[i:], ';')
				if j < 0 {
					break
				}
				if sent, perr := strconv.ParseInt(string(data[i+2:i+j]), 10, 64); perr == nil {
					st.delays = append(st.delays, float64(nowUs-sent)/1000)
					stamped++
				}
				last = i + j + 1
			}
			tail := data[last:]
			if len(tail) > 64 {
				tail = tail[len(tail)-64:]
			}
			carry = append([]byte(nil), tail...)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			st.errors++
			st.bad["read: "+shortErr(err)]++
			return
		}
	}
	st.total = append(st.total, ms(time.Since(start)))
	st.chunks = append(st.chunks, stamped)
	st.streams++
}

func shortErr(err error) string {
	s := err.Error()
	if len(s) > 80 {
		s = s[len(s)-80:]
	}
	return s
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// pct is the p-th percentile (nearest rank) of xs; NaN-free: 0 when empty.
func pct(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if p >= 100 {
		return s[len(s)-1]
	}
	k := int(p / 100 * float64(len(s)))
	if k >= len(s) {
		k = len(s) - 1
	}
	return s[k]
}
