// Command fixedrate sends HTTP/1.1 GET requests at a fixed total rate over
// keep-alive connections and prints how many were answered and their
// latency percentiles: bench-proxy's load for CPU use at a given request
// rate, which wrk (always as fast as it can) does not give. Each
// connection sends on its own schedule, offset from the others; latency
// counts from the scheduled send, so a request held up behind a slow one
// shows its wait (no coordinated omission).
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/bench/internal/getreq"
)

type result struct {
	latencies []time.Duration
	errors    int
	non2xx    int
}

func main() {
	target := flag.String("url", "", "URL to GET (http:// or https://)")
	conns := flag.Int("c", 16, "connections")
	rate := flag.Float64("rate", 1000, "requests per second, over all connections")
	duration := flag.Duration("d", 5*time.Second, "how long to send")
	header := flag.String("H", "", `one extra request header, "Name: value"`)
	flag.Parse()
	if err := run(*target, *conns, *rate, *duration, *header); err != nil {
		fmt.Fprintln(os.Stderr, "fixedrate:", err)
		os.Exit(1)
	}
}

func run(target string, conns int, rate float64, duration time.Duration, header string) error {
	to, req, err := getreq.Build(target, header)
	if err != nil {
		return err
	}
	if conns < 1 || rate <= 0 || duration <= 0 {
		return errors.New("-c, -rate and -d must be positive")
	}

	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	every := time.Duration(float64(time.Second) * float64(conns) / rate)
	start := time.Now()
	results := make([]result, conns)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			first := start.Add(every * time.Duration(i) / time.Duration(conns))
			results[i] = sendOn(ctx, to, req, first, every)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	var all result
	for _, r := range results {
		all.latencies = append(all.latencies, r.latencies...)
		all.errors += r.errors
		all.non2xx += r.non2xx
	}
	if len(all.latencies) == 0 {
		return fmt.Errorf("no request to %s was answered (%d errors)", target, all.errors)
	}
	slices.Sort(all.latencies)
	pct := func(p int) float64 {
		return float64(all.latencies[(len(all.latencies)-1)*p/100]) / float64(time.Millisecond)
	}
	fmt.Printf("requests=%d rate=%.0f p50_ms=%.3f p99_ms=%.3f errors=%d non2xx=%d\n",
		len(all.latencies), float64(len(all.latencies))/elapsed.Seconds(), pct(50), pct(99), all.errors, all.non2xx)
	return nil
}

// sendOn sends req on one connection at first, first+every, ... until ctx
// ends, redialing after an error.
func sendOn(ctx context.Context, to getreq.Target, req []byte, first time.Time, every time.Duration) result {
	var r result
	var d net.Dialer
	var nc net.Conn
	var br *bufio.Reader
	defer func() {
		if nc != nil {
			_ = nc.Close()
		}
	}()
	timer := time.NewTimer(time.Until(first))
	defer timer.Stop()
	for next := first; ; next = next.Add(every) {
		timer.Reset(time.Until(next))
		select {
		case <-ctx.Done():
			return r
		case <-timer.C:
		}
		if nc == nil {
			c, err := to.Dial(ctx, &d)
			if err != nil {
				if ctx.Err() == nil {
					r.errors++
				}
				continue
			}
			nc, br = c, bufio.NewReader(c)
		}
		status, err := roundTrip(nc, br, req)
		if err != nil {
			if ctx.Err() == nil {
				r.errors++
			}
			_ = nc.Close()
			nc = nil
			continue
		}
		r.latencies = append(r.latencies, time.Since(next))
		if status < 200 || status > 299 {
			r.non2xx++
		}
	}
}

func roundTrip(nc net.Conn, br *bufio.Reader, req []byte) (int, error) {
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write(req); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.Close {
		return resp.StatusCode, errors.New("the server closed the connection")
	}
	return resp.StatusCode, err
}
