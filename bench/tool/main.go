// benchtool: the benchmark's fast pieces, standard library only (builds offline).
//
//	benchtool mock    -addr 127.0.0.1:PORT            a mock OpenAI upstream
//	benchtool streams -url URL -body FILE -c 16 -d 5s  a stream load generator (TTFB, per-chunk delay)
//
// Stream chunks carry their send time ("t=<unix µs>; ") in their text, so the
// client can tell how long each chunk took from the mock's write to its own read,
// whatever door (SSE or the light protocol's raw text) it went through.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchtool mock|streams [flags]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "mock":
		runMock(os.Args[2:])
	case "streams":
		runStreams(os.Args[2:])
	default:
		fmt.Fprintln(os.Stderr, "unknown command", os.Args[1])
		os.Exit(2)
	}
}
