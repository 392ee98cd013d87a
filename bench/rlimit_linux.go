//go:build linux

package bench

import "syscall"

// RaiseOpenFiles raises this process's open-file limit to at least want
// when it can (the hard limit too, with the privilege for it) and returns
// the resulting soft limit.
func RaiseOpenFiles(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur >= want {
		return lim.Cur, nil
	}
	next := lim
	next.Cur = want
	if next.Max < want {
		next.Max = want
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err != nil {
		// Without the privilege to raise the hard limit, take what it allows.
		next = lim
		next.Cur = lim.Max
		if err2 := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err2 != nil {
			return lim.Cur, err
		}
		return next.Cur, err
	}
	return next.Cur, nil
}
