//go:build unix

package httpapi

import (
	"errors"
	"net"
	"syscall"
)

// canProbe reports whether peerGone can check c.
func canProbe(c net.Conn) bool {
	_, ok := c.(syscall.Conn)
	return ok
}

// peerGone reports whether the client of c closed its end (or the
// connection failed), without blocking and without consuming anything: a
// recv with MSG_PEEK|MSG_DONTWAIT that finds end-of-file or an error.
func peerGone(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	gone := false
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == nil:
			gone = n == 0 // end of file: the client closed
		case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EWOULDBLOCK), errors.Is(err, syscall.EINTR):
		default:
			gone = true
		}
		return true
	})
	return gone || err != nil
}
