//go:build linux

package schedule

import (
	"syscall"
	"time"
)

// preciseSleep sleeps for d with nanosleep, which blocks this goroutine's
// thread for at most preciseWindow.
func preciseSleep(d time.Duration) {
	if d <= 0 {
		return
	}
	ts := syscall.NsecToTimespec(int64(d))
	for {
		var rem syscall.Timespec
		err := syscall.Nanosleep(&ts, &rem)
		if err != syscall.EINTR {
			return
		}
		ts = rem
	}
}
