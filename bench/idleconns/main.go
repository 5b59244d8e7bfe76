// Command idleconns opens keep-alive connections to an HTTP/1.1 server
// (or, with -h2c, an HTTP/2 one with prior knowledge), sends one GET on
// each and then holds them all idle until it is interrupted: bench-proxy's
// load for the memory a proxy spends per idle client connection. It
// prints "ready N" once every connection has had its response.
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
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/kiln-dev/kiln/bench/internal/getreq"
)

func main() {
	target := flag.String("url", "", "URL to GET (http:// or https://)")
	n := flag.Int("c", 1000, "connections to open and hold")
	dialers := flag.Int("p", 16, "connections opened at once")
	header := flag.String("H", "", `one extra request header, "Name: value"`)
	h2c := flag.Bool("h2c", false, "speak HTTP/2 with prior knowledge (an http:// URL)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fetch := fetchHTTP1
	if *h2c {
		fetch = fetchH2C
	}
	conns, err := open(ctx, *target, *n, *dialers, *header, fetch)
	for _, c := range conns {
		defer c.Close()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "idleconns:", err)
		os.Exit(1)
	}
	fmt.Printf("ready %d\n", len(conns))
	<-ctx.Done()
}

// open dials n connections (dialers at a time) and has each fetch target
// once; on error it returns the connections opened so far.
func open(ctx context.Context, target string, n, dialers int, header string, fetch fetcher) ([]net.Conn, error) {
	to, req, err := getreq.Build(target, header)
	if err != nil {
		return nil, err
	}
	if n < 1 || dialers < 1 {
		return nil, errors.New("-c and -p must be at least 1")
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		first error
		wg    sync.WaitGroup
	)
	next := make(chan int)
	for range dialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				c, err := openOne(ctx, to, req, fetch)
				mu.Lock()
				if c != nil {
					conns = append(conns, c)
				}
				if err != nil && first == nil {
					first = fmt.Errorf("connection %d: %w", i, err)
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < n; i++ {
		mu.Lock()
		failed := first != nil
		mu.Unlock()
		if failed || ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return conns, first
}

// fetcher sends req (an HTTP/1.1 request) on a new connection and reads
// its response.
type fetcher func(c net.Conn, req []byte) error

// openOne opens a connection to the target and fetches req on it within
// 10 s; the connection stays open (it is returned even on error, for
// closing).
func openOne(ctx context.Context, to getreq.Target, req []byte, fetch fetcher) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	c, err := to.Dial(ctx, &d)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := fetch(c, req); err != nil {
		return c, err
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

func fetchHTTP1(c net.Conn, req []byte) error {
	if _, err := c.Write(req); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if err == nil && resp.StatusCode/100 != 2 {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	return err
}
