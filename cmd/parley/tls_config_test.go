package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/broker"
	"github.com/parleychat/parley/storage/postgres/pgtest"
)

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key
// (PEM) into dir and returns their paths.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "parley test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestTLSConfigDefaults: without a certificate nothing uses TLS; the TLS
// settings have the defaults configs/parley.yaml documents, and reach the
// broker's configuration from the environment.
func TestTLSConfigDefaults(t *testing.T) {
	fromFile, _, _, err := loadConfig([]string{"-config", "../../configs/parley.yaml"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defaults, _, _, err := loadConfig(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []config{fromFile, defaults} {
		want := broker.TLSConfig{MQTTAddr: ":8883", WS: true, HTTP: true}
		if got := c.tls(); got != want {
			t.Errorf("TLS settings %+v, want %+v", got, want)
		}
		if c.WSPublicURL != "" {
			t.Errorf("ws.public_url %q, want empty", c.WSPublicURL)
		}
	}
	cert, key := selfSigned(t, t.TempDir())
	cfg, _, _, err := loadConfig([]string{"-ws.tls=false", "-ws.public_url", "wss://chat.example.com/mqtt"}, env(map[string]string{
		"PARLEY_TLS_CERT_FILE": cert, "PARLEY_TLS_KEY_FILE": key, "PARLEY_TLS_CLIENT_CA_FILE": cert,
		"PARLEY_MQTT_TLS_ADDR": ":9883", "PARLEY_HTTP_TLS": "false"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := broker.TLSConfig{CertFile: cert, KeyFile: key, ClientCAFile: cert, MQTTAddr: ":9883"}
	if got := cfg.tls(); got != want {
		t.Fatalf("TLS settings %+v, want %+v", got, want)
	}
}

// TestTLSConfigErrors: inconsistent TLS settings are refused at start (and
// by -check-config), each naming the setting to fix.
func TestTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	withCert := func(more ...string) []string {
		return append([]string{"-tls.cert_file", cert, "-tls.key_file", key}, more...)
	}
	cases := map[string]struct {
		args []string
		want string
	}{
		"cert without key":           {[]string{"-tls.cert_file", cert}, "tls.key_file"},
		"key without cert":           {[]string{"-tls.key_file", key}, "tls.cert_file"},
		"client CA without cert":     {[]string{"-tls.client_ca_file", cert}, "tls.client_ca_file needs tls.cert_file"},
		"cert file missing":          {[]string{"-tls.cert_file", filepath.Join(dir, "nope.crt"), "-tls.key_file", key}, "tls.cert_file: stat"},
		"client CA file missing":     {withCert("-tls.client_ca_file", filepath.Join(dir, "ca.crt")), "tls.client_ca_file: stat"},
		"public URL not a WebSocket": {[]string{"-ws.public_url", "https://chat.example.com/mqtt"}, "ws.public_url must be a ws:// or wss:// URL"},
		"public URL without host":    {[]string{"-ws.public_url", "wss:///mqtt"}, "ws.public_url must be"},
		"plain public URL, HTTPS":    {withCert("-ws.public_url", "ws://chat.example.com/mqtt"), "use wss://"},
		"HTTPS page, plain ws":       {withCert("-ws.tls=false"), "ws.public_url"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, _, _, err := loadConfig(c.args, env(nil), io.Discard)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to mention %q", err, c.want)
			}
		})
	}
	for name, args := range map[string][]string{
		"TLS everywhere":                    withCert(),
		"client CA":                         withCert("-tls.client_ca_file", cert),
		"plain ws behind a TLS proxy":       withCert("-ws.tls=false", "-ws.public_url", "wss://chat.example.com/mqtt"),
		"no TLS, proxy URL":                 {"-ws.public_url", "ws://chat.example.com:9001/mqtt"},
		"proxy terminates both":             withCert("-ws.tls=false", "-http.tls=false"),
		"wss beside a plain page, no proxy": withCert("-http.tls=false"),
	} {
		if _, _, _, err := loadConfig(args, env(nil), io.Discard); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestTLSWebAppEndpoint: what the web app is told to dial for MQTT over
// WebSocket.
func TestTLSWebAppEndpoint(t *testing.T) {
	base := config{WSAddr: ":8083", WSPath: "/mqtt", WSTLS: true, HTTPTLS: true}
	withTLS := func(c config) config { c.TLSCert, c.TLSKey = "server.crt", "server.key"; return c }
	cases := map[string]struct {
		cfg  config
		host string
		want string
	}{
		"default":                {base, "chat.example.com:8080", ":8083/mqtt"},
		"TLS on both":            {withTLS(base), "chat.example.com:8080", ":8083/mqtt"},
		"public URL":             {config{WSAddr: ":8083", WSPath: "/mqtt", WSPublicURL: "wss://edge.example.com/mqtt"}, "chat.example.com", "wss://edge.example.com/mqtt"},
		"wss beside plain HTTP":  {withTLS(config{WSAddr: ":9001", WSPath: "/ws", WSTLS: true}), "chat.example.com:8080", "wss://chat.example.com:9001/ws"},
		"wss, host without port": {withTLS(config{WSAddr: ":8083", WSPath: "/mqtt", WSTLS: true}), "chat.example.com", "wss://chat.example.com:8083/mqtt"},
		"wss, IPv6 host":         {withTLS(config{WSAddr: ":8083", WSPath: "/mqtt", WSTLS: true}), "[::1]:8080", "wss://[::1]:8083/mqtt"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.Host = c.host
			if got := wsEndpoint(c.cfg)(r); got != c.want {
				t.Fatalf("endpoint %q, want %q", got, c.want)
			}
		})
	}
}

// TestTLSPortTaken: the command reports a taken mqtt.tls_addr with the
// listener and the setting that moves it.
func TestTLSPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cert, key := selfSigned(t, t.TempDir())
	db := pgtest.NewDatabase(t)
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"-mqtt.addr", "127.0.0.1:0", "-mqtt.tls_addr", ln.Addr().String(),
		"-ws.addr", "127.0.0.1:0", "-http.addr", "127.0.0.1:0", "-tls.cert_file", cert, "-tls.key_file", key},
		env(map[string]string{"PARLEY_DATABASE_URL": db}), &out, &errOut)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, errOut.String())
	}
	for _, want := range []string{"MQTT over TLS listener", ln.Addr().String(), "mqtt.tls_addr", "PARLEY_MQTT_TLS_ADDR", "address already in use"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("error output lacks %q:\n%s", want, errOut.String())
		}
	}
}
