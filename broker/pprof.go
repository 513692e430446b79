package broker

import (
	"net/http"
	"net/http/pprof"
)

// withPprof serves net/http/pprof's profiles under /debug/pprof/ in front of
// next (Config.Pprof). The profiles tell where memory and CPU go, and leak
// internals: for measuring on a private address, never on a public one.
func withPprof(next http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/", next)
	return mux
}
