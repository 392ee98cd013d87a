//go:build !unix

package httpapi

import "net"

// Without a non-blocking peek, a closed client is noticed at the next write.
func canProbe(net.Conn) bool { return false }

func peerGone(net.Conn) bool { return false }
