package main

import (
	"encoding/json"
	"flag"
	"io"
	"log"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// mockRequest is the part of a chat request the mock looks at.
type mockRequest struct {
	Model         string `json:"model"`
	Stream        bool   `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

func runMock(args []string) {
	fs := flag.NewFlagSet("mock", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:18080", "listen address (loopback only)")
	chunks := fs.Int("chunks", 10, "content chunks per stream")
	gap := fs.Duration("gap", 20*time.Millisecond, "pause between chunks for a paced model")
	paced := fs.String("paced", "paced", "models whose name contains this are paced")
	fs.Parse(args)
	if !strings.HasPrefix(*addr, "127.") && !strings.HasPrefix(*addr, "localhost:") {
		log.Fatal("the mock listens on loopback only")
	}
	h := &mockHandler{chunks: *chunks, gap: *gap, paced: *paced}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/chat/completions", h.chat)
	mux.HandleFunc("/chat/completions", h.chat)
	mux.HandleFunc("/v1/models", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"object":"list","data":[{"id":"gpt-3.5-turbo-1106","object":"model","created":1700000000,"owned_by":"mock"}]}`)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	// IdleTimeout: a relay paused (SIGSTOP) while another one is measured keeps its connections
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 10 * time.Minute}
	log.Fatal(srv.ListenAndServe())
}

type mockHandler struct {
	chunks int
	gap    time.Duration
	paced  string
}

func (h *mockHandler) chat(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, `{"error":{"message":"POST only"}}`, http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	var req mockRequest
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":{"message":"bad JSON","type":"invalid_request_error"}}`)
		return
	}
	model := strconv.Quote(req.Model)
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"chatcmpl-mock","object":"chat.completion","created":1700000000,"model":`+model+
			`,"choices":[{"index":0,"message":{"role":"assistant","content":"Hello! I am a mock upstream, answering at once."},`+
			`"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":11,"total_tokens":23},`+
			`"system_fingerprint":"fp_mock"}`)
		return
	}
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	pace := h.paced != "" && strings.Contains(req.Model, h.paced)
	head := `data: {"id":"chatcmpl-mock","object":"chat.completion.chunk","created":1700000000,"model":` + model + `,"choices":[`
	for i := 0; i < h.chunks; i++ {
		if i > 0 && pace {
			time.Sleep(h.gap)
		}
		role := ""
		if i == 0 {
			role = `"role":"assistant",`
		}
		stamp := strconv.FormatInt(time.Now().UnixMicro(), 10)
		io.WriteString(w, head+`{"index":0,"delta":{`+role+`"content":"t=`+stamp+`; "},"finish_reason":null}]}`+"\n\n")
		if flusher != nil {
			flusher.Flush()
		}
	}
	io.WriteString(w, head+`{"index":0,"delta":{},"finish_reason":"stop"}]}`+"\n\n")
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		io.WriteString(w, `data: {"id":"chatcmpl-mock","object":"chat.completion.chunk","created":1700000000,"model":`+model+
			`,"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":`+strconv.Itoa(h.chunks*3)+
			`,"total_tokens":`+strconv.Itoa(12+h.chunks*3)+`}}`+"\n\n")
	}
	io.WriteString(w, "data: [DONE]\n\n")
}
