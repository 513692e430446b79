//go:build !linux

package schedule

import "time"

// preciseSleep falls back to time.Sleep where nanosleep is not at hand.
func preciseSleep(d time.Duration) { time.Sleep(d) }
