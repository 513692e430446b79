package broker

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
)

// The administrators' listener (Config.AdminAddr): the API, with the routes
// and the HTTP Basic auth of administrators that the public HTTPAddr then
// refuses (404), so that an administrator's password can be tried only
// from a private network.

// newAdminHTTP prepares the administrators' server, with HTTPAddr's TLS and
// its client certificates for administrators (tls.client_ca_file).
func (s *Server) newAdminHTTP(d Deps, log *slog.Logger) {
	var h http.Handler = s.api.Admin()
	if s.tls != nil && s.tls.clientCAs != nil {
		h = requireAdminCert(h, d.Accounts.IsAdmin, log.With("component", "api"))
	}
	s.adminHTTP = s.cfg.newHTTPServer(h)
	if s.httpTLS() {
		s.adminHTTP.TLSConfig = s.tls.config()
		s.adminHTTP.ErrorLog = httpErrorLog(log.With("component", "http"), "admin")
	}
	s.adminDone = make(chan struct{})
}

// serveAdmin serves the administrators' listener, if there is one.
func (s *Server) serveAdmin() {
	if s.adminHTTP == nil {
		return
	}
	go func() {
		defer close(s.adminDone)
		serve := s.adminHTTP.Serve
		if s.httpTLS() {
			serve = func(ln net.Listener) error { return s.adminHTTP.ServeTLS(ln, "", "") }
		}
		if err := serve(s.adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("administrators' http server", "error", err)
		}
	}()
}

// closeAdmin stops the administrators' listener, if there is one.
func (s *Server) closeAdmin(ctx context.Context) {
	if s.adminHTTP == nil {
		return
	}
	if err := s.adminHTTP.Shutdown(ctx); err != nil {
		s.log.Warn("administrators' http shutdown", "error", err)
	}
	<-s.adminDone
}

// AdminAddr returns the bound address of the administrators' HTTP
// (Config.AdminAddr), or "".
func (s *Server) AdminAddr() string {
	if s.adminLn == nil {
		return ""
	}
	return s.adminLn.Addr().String()
}
