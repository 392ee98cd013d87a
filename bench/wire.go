package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Clients the load generator can use. The wire client is the default: on a
// small machine the generator shares the cores with the server, and Go's
// http.Client spends about as much CPU per request as the server does
// (26–47 µs against 25–81 µs), so it measured itself as much as the
// server. The wire client writes each request with one write and reads the
// response from a buffered reader, about 10 µs a request. The std client
// is kept to cross-check figures, and for https endpoints.
const (
	ClientWire = "wire"
	ClientStd  = "std"
)

// requester issues one request and checks its status; it owns one
// keep-alive connection to one endpoint.
type requester interface {
	do(method, target, contentType, body string) error
	close()
}

// endpoint is a client URL checked against the client kind that will
// speak to it; open gives each load client its own requester.
type endpoint struct {
	std    bool   // through net/http's client (ClientStd, or an https URL)
	base   string // std: the URL without a trailing slash
	addr   string // wire: host:port
	prefix string // wire: the URL's path, before every target
}

// parseEndpoint checks ep ("http://host:port") for kind (ClientWire or
// ClientStd).
func parseEndpoint(kind, ep string) (endpoint, error) {
	u, err := url.Parse(ep)
	if err != nil {
		return endpoint{}, fmt.Errorf("bench: endpoint %q: %w", ep, err)
	}
	switch {
	case kind == ClientStd || (kind == ClientWire && u.Scheme == "https"):
		return endpoint{std: true, base: strings.TrimRight(ep, "/")}, nil
	case kind == ClientWire && u.Scheme == "http" && u.Host != "":
		return endpoint{addr: u.Host, prefix: strings.TrimRight(u.Path, "/")}, nil
	case kind == ClientWire:
		return endpoint{}, fmt.Errorf("bench: endpoint %q is not an http URL", ep)
	default:
		return endpoint{}, fmt.Errorf("bench: unknown client %q (wire, std)", kind)
	}
}

// open returns a requester on its own connection; cancelling ctx ends the
// request in flight.
func (e endpoint) open(ctx context.Context) requester {
	if e.std {
		return &stdRequester{ctx: ctx, hc: newHTTPClient(), base: e.base}
	}
	return &wireConn{ctx: ctx, addr: e.addr, prefix: e.prefix}
}

// stdRequester goes through net/http's client.
type stdRequester struct {
	ctx  context.Context
	hc   *http.Client
	base string
}

func newHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 3 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 1,
		MaxConnsPerHost:     1,
		DisableCompression:  true,
	}}
}

func (s *stdRequester) do(method, target, contentType, body string) error {
	req, err := http.NewRequestWithContext(s.ctx, method, s.base+target, strings.NewReader(body))
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s", method, target, resp.Status)
	}
	return nil
}

func (s *stdRequester) close() { s.hc.CloseIdleConnections() }

// wireConn speaks HTTP/1.1 on one keep-alive TCP connection, dialled on
// first use and again after an error or a "Connection: close". It reads
// responses framed by Content-Length or chunked encoding.
type wireConn struct {
	ctx    context.Context
	addr   string
	prefix string // the endpoint's path, if any, before every target
	conn   net.Conn
	stop   func() bool // unregisters the cancellation of conn
	br     *bufio.Reader
	req    []byte // scratch for the request bytes
}

// wireTimeout bounds one request, so a stalled server ends the run with
// errors instead of hanging it.
const wireTimeout = 30 * time.Second

func (w *wireConn) do(method, target, contentType, body string) error {
	if w.conn == nil {
		d := net.Dialer{Timeout: 3 * time.Second}
		c, err := d.DialContext(w.ctx, "tcp", w.addr)
		if err != nil {
			return err
		}
		w.conn, w.br = c, bufio.NewReaderSize(c, 16<<10)
		w.stop = context.AfterFunc(w.ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	}
	b := append(w.req[:0], method...)
	b = append(b, ' ')
	b = append(b, w.prefix...)
	b = append(b, target...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, w.addr...)
	b = append(b, "\r\n"...)
	if method != http.MethodGet && method != http.MethodHead {
		if contentType != "" {
			b = append(b, "Content-Type: "...)
			b = append(b, contentType...)
			b = append(b, "\r\n"...)
		}
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(body)), 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	b = append(b, body...)
	w.req = b
	// The deadline first: a cancellation after the check below overrides it.
	_ = w.conn.SetDeadline(time.Now().Add(wireTimeout))
	if err := w.ctx.Err(); err != nil {
		return err
	}
	if _, err := w.conn.Write(b); err != nil {
		w.close()
		return err
	}
	status, keepAlive, err := readResponse(w.br, method == http.MethodHead)
	if err != nil {
		w.close()
		return fmt.Errorf("%s %s: %w", method, target, err)
	}
	if !keepAlive {
		w.close()
	}
	if status >= 300 {
		return fmt.Errorf("%s %s: status %d", method, target, status)
	}
	return nil
}

func (w *wireConn) close() {
	if w.conn != nil {
		w.stop()
		w.conn.Close()
		w.conn, w.br, w.stop = nil, nil, nil
	}
}

var errMalformed = errors.New("malformed HTTP response")

// readResponse reads one response from br and discards its body. It
// returns the status code and whether the connection may be reused.
func readResponse(br *bufio.Reader, head bool) (status int, keepAlive bool, err error) {
	line, err := readLine(br)
	if err != nil {
		return 0, false, err
	}
	// "HTTP/1.1 200 OK"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, false, fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, false, fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	keepAlive = line[7] == '1'
	length, chunked := int64(-1), false
	for {
		line, err = readLine(br)
		if err != nil {
			return 0, false, err
		}
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, false, fmt.Errorf("%w: header %q", errMalformed, line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case asciiEqualFold(name, "Content-Length"):
			if length, err = strconv.ParseInt(string(value), 10, 64); err != nil || length < 0 {
				return 0, false, fmt.Errorf("%w: Content-Length %q", errMalformed, value)
			}
		case asciiEqualFold(name, "Transfer-Encoding"):
			chunked = asciiEqualFold(value, "chunked")
		case asciiEqualFold(name, "Connection"):
			if asciiEqualFold(value, "close") {
				keepAlive = false
			} else if asciiEqualFold(value, "keep-alive") {
				keepAlive = true
			}
		}
	}
	switch {
	case head || status == http.StatusNoContent || status == http.StatusNotModified || status < 200:
	case chunked:
		err = discardChunked(br)
	case length >= 0:
		_, err = br.Discard(int(length))
	default: // body until the server closes the connection
		_, err = io.Copy(io.Discard, br)
		keepAlive = false
	}
	return status, keepAlive, err
}

func discardChunked(br *bufio.Reader) error {
	for {
		line, err := readLine(br)
		if err != nil {
			return err
		}
		size, _, _ := bytes.Cut(line, []byte(";"))
		n, err := strconv.ParseInt(string(bytes.TrimSpace(size)), 16, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("%w: chunk size %q", errMalformed, line)
		}
		if n == 0 { // trailers, then the blank line
			for {
				if line, err = readLine(br); err != nil || len(line) == 0 {
					return err
				}
			}
		}
		if _, err := br.Discard(int(n)); err != nil {
			return err
		}
		if line, err = readLine(br); err != nil {
			return err
		}
		if len(line) != 0 {
			return fmt.Errorf("%w: chunk not followed by CRLF", errMalformed)
		}
	}
}

// readLine returns the next line without its CRLF; the slice is valid
// until the next read.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("%w: line longer than %d bytes", errMalformed, br.Size())
		}
		return nil, err
	}
	return bytes.TrimRight(line, "\r\n"), nil
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
