// Package qmp is a small client for the QEMU Machine Protocol over a unix
// socket: it negotiates capabilities, runs commands (query-status, stop, cont,
// system_reset, system_powerdown, quit, …) and delivers asynchronous events
// such as SHUTDOWN.
package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
)

// Error is an error QEMU returned for a command.
type Error struct {
	Command string `json:"-"`
	Class   string `json:"class"`
	Desc    string `json:"desc"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("QEMU refused %s: %s (%s)", e.Command, e.Desc, e.Class)
}

// ErrClosed is returned for commands on a connection that has ended,
// typically because QEMU exited.
var ErrClosed = errors.New("QMP connection closed (has QEMU exited?)")

// Event is an asynchronous QMP event.
type Event struct {
	Name string          `json:"event"`
	Data json.RawMessage `json:"data,omitempty"`
	// Timestamp is seconds and microseconds since the epoch, as QEMU sends it.
	Timestamp struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
}

// ShutdownReason returns data.reason of a SHUTDOWN event ("guest-shutdown",
// "guest-reset", "host-qmp-quit", …), or "".
func (e Event) ShutdownReason() string {
	var d struct {
		Reason string `json:"reason"`
	}
	_ = json.Unmarshal(e.Data, &d)
	return d.Reason
}

// Status is the answer of query-status.
type Status struct {
	Running bool   `json:"running"`
	Status  string `json:"status"`
}

// message is any line QEMU sends: a greeting, a command result, an error or an event.
type message struct {
	Greeting *json.RawMessage `json:"QMP,omitempty"`
	Return   *json.RawMessage `json:"return,omitempty"`
	Error    *Error           `json:"error,omitempty"`
	Event    string           `json:"event,omitempty"`
	ID       json.RawMessage  `json:"id,omitempty"`
}

// decodeMessage parses one line from QEMU.
func decodeMessage(line []byte) (message, error) {
	var m message
	if err := json.Unmarshal(line, &m); err != nil {
		return message{}, fmt.Errorf("QMP sent a line that is not JSON: %w", err)
	}
	kinds := 0
	for _, set := range []bool{m.Greeting != nil, m.Return != nil, m.Error != nil, m.Event != ""} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		return message{}, fmt.Errorf("QMP sent a message that is not exactly one of greeting, return, error or event")
	}
	return m, nil
}

type reply struct {
	ret json.RawMessage
	err *Error
}

// Client is one QMP connection. Its methods are safe for concurrent use.
type Client struct {
	conn   net.Conn
	wmu    sync.Mutex
	mu     sync.Mutex
	nextID uint64
	wait   map[string]chan reply
	events chan Event
	done   chan struct{}
	rerr   error
}

// Dial connects to the QMP unix socket at path, reads QEMU's greeting and
// leaves capabilities negotiation mode.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("connect to QMP socket %s: %w", path, err)
	}
	c := &Client{conn: conn, wait: map[string]chan reply{}, events: make(chan Event, 64), done: make(chan struct{})}
	greeted := make(chan error, 1)
	go c.readLoop(greeted)
	select {
	case err := <-greeted:
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("QMP socket %s: %w", path, err)
		}
	case <-ctx.Done():
		conn.Close()
		return nil, fmt.Errorf("QMP socket %s: no greeting: %w", path, ctx.Err())
	}
	if err := c.Execute(ctx, "qmp_capabilities", nil, nil); err != nil {
		conn.Close()
		return nil, fmt.Errorf("QMP socket %s: %w", path, err)
	}
	return c, nil
}

func (c *Client) readLoop(greeted chan<- error) {
	defer close(c.done)
	sc := bufio.NewScanner(c.conn)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	first := true
	for sc.Scan() {
		m, err := decodeMessage(sc.Bytes())
		if err != nil {
			c.fail(err)
			if first {
				greeted <- err
			}
			return
		}
		if first {
			first = false
			if m.Greeting == nil {
				err := errors.New("the first message is not a QMP greeting")
				c.fail(err)
				greeted <- err
				return
			}
			greeted <- nil
			continue
		}
		switch {
		case m.Event != "":
			var ev Event
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				c.deliver(ev)
			}
		case m.Return != nil || m.Error != nil:
			id := string(m.ID)
			c.mu.Lock()
			ch := c.wait[id]
			delete(c.wait, id)
			c.mu.Unlock()
			if ch != nil {
				r := reply{err: m.Error}
				if m.Return != nil {
					r.ret = *m.Return
				}
				ch <- r
			}
		}
	}
	err := sc.Err()
	if err == nil {
		err = ErrClosed
	}
	c.fail(err)
	if first {
		greeted <- err
	}
}

// deliver queues an event, dropping the oldest one when nobody reads them.
func (c *Client) deliver(ev Event) {
	for {
		select {
		case c.events <- ev:
			return
		default:
			select {
			case <-c.events:
			default:
			}
		}
	}
}

func (c *Client) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rerr == nil {
		c.rerr = err
	}
	for id, ch := range c.wait {
		close(ch)
		delete(c.wait, id)
	}
}

// Execute runs command with args (nil for none) and decodes its return value
// into result (nil to ignore it).
func (c *Client) Execute(ctx context.Context, command string, args, result any) error {
	c.mu.Lock()
	if c.rerr != nil {
		c.mu.Unlock()
		return fmt.Errorf("%s: %w", command, ErrClosed)
	}
	c.nextID++
	id := strconv.Quote("kiln-" + strconv.FormatUint(c.nextID, 10))
	ch := make(chan reply, 1)
	c.wait[id] = ch
	c.mu.Unlock()

	req := struct {
		Execute   string          `json:"execute"`
		Arguments any             `json:"arguments,omitempty"`
		ID        json.RawMessage `json:"id"`
	}{command, args, json.RawMessage(id)}
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode QMP command %s: %w", command, err)
	}
	c.wmu.Lock()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.conn.SetWriteDeadline(dl)
	}
	_, err = c.conn.Write(append(b, '\n'))
	c.wmu.Unlock()
	if err != nil {
		c.forget(id)
		return fmt.Errorf("send QMP command %s: %w", command, err)
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return fmt.Errorf("%s: %w", command, ErrClosed)
		}
		if r.err != nil {
			r.err.Command = command
			return r.err
		}
		if result != nil {
			if err := json.Unmarshal(r.ret, result); err != nil {
				return fmt.Errorf("decode the answer to QMP command %s: %w", command, err)
			}
		}
		return nil
	case <-ctx.Done():
		c.forget(id)
		return fmt.Errorf("QMP command %s: %w", command, ctx.Err())
	}
}

func (c *Client) forget(id string) {
	c.mu.Lock()
	delete(c.wait, id)
	c.mu.Unlock()
}

// Status runs query-status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	err := c.Execute(ctx, "query-status", nil, &s)
	return s, err
}

// Stop pauses the guest's CPUs.
func (c *Client) Stop(ctx context.Context) error { return c.Execute(ctx, "stop", nil, nil) }

// Cont resumes the guest's CPUs (also the first start of a QEMU run with -S).
func (c *Client) Cont(ctx context.Context) error { return c.Execute(ctx, "cont", nil, nil) }

// SystemReset presses the reset button.
func (c *Client) SystemReset(ctx context.Context) error {
	return c.Execute(ctx, "system_reset", nil, nil)
}

// SystemPowerdown presses the ACPI power button (a graceful shutdown request).
func (c *Client) SystemPowerdown(ctx context.Context) error {
	return c.Execute(ctx, "system_powerdown", nil, nil)
}

// Quit makes QEMU exit at once. QEMU may close the socket before its answer
// arrives; that counts as success.
func (c *Client) Quit(ctx context.Context) error {
	err := c.Execute(ctx, "quit", nil, nil)
	if errors.Is(err, ErrClosed) {
		return nil
	}
	return err
}

// Events delivers asynchronous events. When nobody reads, the oldest are dropped.
func (c *Client) Events() <-chan Event { return c.events }

// Done is closed when the connection ends, e.g. because QEMU exited.
func (c *Client) Done() <-chan struct{} { return c.done }

// Close ends the connection.
func (c *Client) Close() error {
	err := c.conn.Close()
	<-c.done
	return err
}
