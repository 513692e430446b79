package loadtest

import "syscall"

// System errors errReason recognizes.
const (
	errEMFILE  = syscall.EMFILE
	errRefused = syscall.ECONNREFUSED
)
