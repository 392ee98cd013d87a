package leanhttp

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// response is the http.ResponseWriter of a plain request. It buffers the
// body and, when the handler returns, sends the head and the body in one
// write, framed by Content-Length; a body that outgrows streamAfter is sent
// as it comes, chunked unless the handler set Content-Length. Like
// net/http's it adds Date, Content-Length and a sniffed Content-Type when
// the handler did not set them, and answers HEAD without a body.
//
// Unlike net/http's, it reads the header map when the head is sent, not
// when WriteHeader is called, does not send 1xx answers, and does not
// implement http.Flusher or http.Hijacker.
type response struct {
	c      *conn
	header http.Header
	body   body

	status        int
	wroteHeader   bool
	head          bool  // a HEAD request: count the body, send none
	contentLength int64 // set by the handler; -1 if not
	written       int64 // body bytes the handler wrote
	streaming     bool  // the head is sent; Write sends on
	chunked       bool  // streaming in chunks
	closeAfter    bool  // close the connection after this answer
	bodyLeft      bool  // the request body was not read to its end
	err           error // a write to the connection failed
}

func (w *response) Header() http.Header { return w.header }

func (w *response) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if w.wroteHeader || code < 200 {
		return // 1xx informational answers are not sent; a second call is ignored
	}
	w.wroteHeader = true
	w.status = code
	if cl := w.header["Content-Length"]; len(cl) > 0 {
		n, err := strconv.ParseInt(cl[0], 10, 64)
		if len(cl) == 1 && err == nil && n >= 0 {
			w.contentLength = n
		} else {
			delete(w.header, "Content-Length") // as net/http: a bad value is dropped
		}
	}
}

func (w *response) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if w.contentLength >= 0 && w.written+int64(len(p)) > w.contentLength {
		return 0, http.ErrContentLength
	}
	if w.err != nil {
		return 0, w.err
	}
	w.written += int64(len(p))
	if w.head {
		// Keep the start, never sent, to sniff the Content-Type from.
		if n := sniffLen - len(w.c.wbuf); n > 0 {
			w.c.wbuf = append(w.c.wbuf, p[:min(n, len(p))]...)
		}
		return len(p), nil
	}
	if !w.streaming {
		if len(w.c.wbuf)+len(p) <= streamAfter {
			w.c.wbuf = append(w.c.wbuf, p...)
			return len(p), nil
		}
		w.startStreaming(p)
	}
	w.send(p)
	if w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

// sniffLen is how much of a body http.DetectContentType looks at.
const sniffLen = 512

// startStreaming sends the head (chunked unless the length is known) and
// what the body buffer holds; p is the write that does not fit.
func (w *response) startStreaming(p []byte) {
	w.streaming = true
	w.chunked = w.contentLength < 0
	sniff := w.c.wbuf
	if n := sniffLen - len(sniff); n > 0 {
		// Sniff the body's start, whatever its first writes held.
		sniff = append(sniff, p[:min(n, len(p))]...)
	}
	b := w.appendHead(w.c.hbuf[:0], -1, sniff)
	if body := w.c.wbuf; len(body) > 0 {
		if w.chunked {
			b = strconv.AppendInt(b, int64(len(body)), 16)
			b = append(b, "\r\n"...)
			b = append(b, body...)
			b = append(b, "\r\n"...)
		} else {
			b = append(b, body...)
		}
	}
	w.c.hbuf = b
	w.c.wbuf = w.c.wbuf[:0]
	w.write(b)
}

// send writes p to the connection, as one chunk when chunked.
func (w *response) send(p []byte) {
	if !w.chunked {
		w.write(p)
		return
	}
	size := strconv.AppendInt(w.c.hbuf[:0], int64(len(p)), 16)
	size = append(size, "\r\n"...)
	w.c.hbuf = size
	w.writev(size, p, crlf)
}

func (w *response) write(b []byte) {
	if w.err == nil {
		_, w.err = w.c.nc.Write(b)
	}
}

func (w *response) writev(bufs ...[]byte) {
	if w.err == nil {
		nb := net.Buffers(bufs)
		_, w.err = nb.WriteTo(w.c.nc)
	}
}

var lastChunk = []byte("0\r\n\r\n")

// finish completes the answer after the handler returned.
func (w *response) finish() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.body.drain() {
		w.closeAfter, w.bodyLeft = true, true
	}
	if w.streaming {
		if w.chunked {
			w.write(lastChunk)
		} else if w.written < w.contentLength {
			w.closeAfter = true // the client sees a short body, as with net/http
		}
		return
	}
	length := int64(-1)
	if w.contentLength < 0 && bodyAllowed(w.status) && (!w.head || w.written > 0) {
		length = w.written
	}
	if w.contentLength >= 0 && w.written < w.contentLength && !w.head && bodyAllowed(w.status) {
		w.closeAfter = true
	}
	b := w.appendHead(w.c.hbuf[:0], length, w.c.wbuf)
	body := w.c.wbuf
	if w.head {
		body = nil // kept only to sniff from
	}
	if len(body) <= 2048 {
		// Small: head and body in one write.
		b = append(b, body...)
		w.write(b)
	} else {
		w.writev(b, body)
	}
	w.c.hbuf = b
	w.c.wbuf = w.c.wbuf[:0]
}

var (
	status200 = []byte("HTTP/1.1 200 OK\r\n")
	status201 = []byte("HTTP/1.1 201 Created\r\n")
)

// appendHead appends the status line and the header block; length >= 0
// adds that Content-Length, and sniff is the body's start, to sniff the
// Content-Type from when the handler set none.
func (w *response) appendHead(b []byte, length int64, sniff []byte) []byte {
	switch w.status {
	case http.StatusOK:
		b = append(b, status200...)
	case http.StatusCreated:
		b = append(b, status201...)
	default:
		b = append(b, "HTTP/1.1 "...)
		b = strconv.AppendInt(b, int64(w.status), 10)
		b = append(b, ' ')
		if text := http.StatusText(w.status); text != "" {
			b = append(b, text...)
		} else {
			b = append(b, "status code "...)
			b = strconv.AppendInt(b, int64(w.status), 10)
		}
		b = append(b, "\r\n"...)
	}
	h := w.header
	if _, ok := h["Date"]; !ok {
		b = append(b, "Date: "...)
		b = appendDate(b)
		b = append(b, "\r\n"...)
	}
	delete(h, "Transfer-Encoding") // the framing is this writer's
	if w.chunked {
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	if w.contentLength < 0 {
		// Set after WriteHeader: ignored, as net/http does, rather than
		// sent beside the one added here.
		delete(h, "Content-Length")
	}
	if !bodyAllowed(w.status) {
		delete(h, "Content-Length")
		if w.status == http.StatusNotModified {
			delete(h, "Content-Type") // as net/http (RFC 7232, section 4.1)
		}
	} else if _, ok := h["Content-Type"]; !ok && len(sniff) > 0 {
		// As net/http, an encoded body (Content-Encoding) is not sniffed.
		if ce := h["Content-Encoding"]; len(ce) == 0 || ce[0] == "" {
			b = append(b, "Content-Type: "...)
			b = append(b, http.DetectContentType(sniff[:min(len(sniff), sniffLen)])...)
			b = append(b, "\r\n"...)
		}
	}
	if length >= 0 && bodyAllowed(w.status) {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, length, 10)
		b = append(b, "\r\n"...)
	}
	if hasValue(h["Connection"], "close") {
		w.closeAfter = true
	} else if w.closeAfter || w.c.s.inShutdown.Load() {
		w.closeAfter = true
		b = append(b, "Connection: close\r\n"...)
	}
	for k, vs := range h {
		if !validName(k) {
			continue
		}
		for _, v := range vs {
			b = append(b, k...)
			b = append(b, ": "...)
			b = appendValue(b, v)
			b = append(b, "\r\n"...)
		}
	}
	return append(b, "\r\n"...)
}

// bodyAllowed reports whether a response with status may have a body.
func bodyAllowed(status int) bool {
	return !(status >= 100 && status <= 199 || status == http.StatusNoContent || status == http.StatusNotModified)
}

func hasValue(vs []string, token string) bool {
	for _, v := range vs {
		if hasToken([]byte(v), token) {
			return true
		}
	}
	return false
}

// validName reports whether k may be sent as a header name.
func validName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !tokenByte[k[i]] {
			return false
		}
	}
	return true
}

// appendValue appends v with CR and LF replaced by blanks, as net/http
// does, so a value can never end the head early.
func appendValue(b []byte, v string) []byte {
	if strings.IndexByte(v, '\r') < 0 && strings.IndexByte(v, '\n') < 0 {
		return append(b, v...)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		b = append(b, c)
	}
	return b
}

// The Date header changes once a second: it is formatted once a second.
type dateText struct {
	sec  int64
	text []byte
}

var dateCache atomic.Pointer[dateText]

func appendDate(b []byte) []byte {
	now := time.Now()
	if d := dateCache.Load(); d != nil && d.sec == now.Unix() {
		return append(b, d.text...)
	}
	d := &dateText{sec: now.Unix(), text: now.UTC().AppendFormat(nil, http.TimeFormat)}
	dateCache.Store(d)
	return append(b, d.text...)
}
