package broker_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parleychat/parley/auth"
	"github.com/parleychat/parley/broker"
	"github.com/parleychat/parley/broker/brokertest"
	"github.com/parleychat/parley/internal/testwait"
	"github.com/parleychat/parley/protocol"
	"github.com/parleychat/parley/storage/postgres"
)

// testCA is a certificate authority made by one test; file holds its
// certificate (PEM) in the test's directory.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
}

func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: serial(t), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{cert: cert, key: key, file: filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".pem")}
	writeFile(t, ca.file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return ca
}

func serial(t *testing.T) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// issue returns a certificate and its key (PEM) signed by ca: for a server
// on 127.0.0.1 and localhost, or for a client named cn.
func (ca *testCA) issue(t *testing.T, cn string, client bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: serial(t), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// clientCert returns a client certificate for cn signed by ca.
func (ca *testCA) clientCert(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	c, k := ca.issue(t, cn, true)
	cert, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// trusting returns a client configuration trusting ca only, presenting
// certs[0] if given. It presents it whatever CAs the server asks for (a Go
// client would otherwise keep back one the server does not accept).
func (ca *testCA) trusting(certs ...tls.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	cfg := &tls.Config{RootCAs: pool}
	if len(certs) > 0 {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &certs[0], nil }
	}
	return cfg
}

// writeFile replaces name atomically (a new file renamed over it), as
// certificate tools do.
func writeFile(t *testing.T, name string, b []byte) {
	t.Helper()
	tmp := name + ".new"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, name); err != nil {
		t.Fatal(err)
	}
}

// tlsNode is a node serving mqtts, wss and https with a certificate of ca.
type tlsNode struct {
	*brokertest.Node
	ca                *testCA
	dir               string
	certFile, keyFile string
	mqtts             string // host:port
	https             string // https://host:port
}

// startTLS starts a node with TLS on every listener (and client
// certificates for administrators when clientCAFile is set); it checks the
// certificate files every 10 ms.
func startTLS(t *testing.T, clientCAFile string) *tlsNode {
	t.Helper()
	dir := t.TempDir()
	n := &tlsNode{ca: newTestCA(t, dir, "Parley Test CA"), dir: dir,
		certFile: filepath.Join(dir, "server.crt"), keyFile: filepath.Join(dir, "server.key")}
	n.replacePair(t)
	cfg := brokertestConfig()
	cfg.TLS = broker.TLSConfig{CertFile: n.certFile, KeyFile: n.keyFile, ClientCAFile: clientCAFile,
		MQTTAddr: "127.0.0.1:0", WS: true, HTTP: true, ReloadCheck: 10 * time.Millisecond}
	n.Node = brokertest.Start(t, withConfig(brokertest.Options{Store: brokertest.Postgres}, cfg))
	n.mqtts, n.https = n.Srv.MQTTTLSAddr(), "https://"+n.Srv.HTTPAddr()
	return n
}

// replacePair writes a new server certificate and key (a new serial) and
// returns the certificate.
func (n *tlsNode) replacePair(t *testing.T) *x509.Certificate {
	t.Helper()
	c, k := n.ca.issue(t, "parley server", false)
	writeFile(t, n.certFile, c)
	writeFile(t, n.keyFile, k)
	cert, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return cert.Leaf
}

// dialTLS opens a TLS connection to addr; the handshake is complete.
func dialTLS(t *testing.T, addr string, cfg *tls.Config) (*tls.Conn, error) {
	t.Helper()
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: brokertest.Patience(5 * time.Second)}, Config: cfg}
	c, err := d.DialContext(brokertest.Ctx(t, 5*time.Second), "tcp", addr)
	if err != nil {
		return nil, err
	}
	return c.(*tls.Conn), nil
}

// servedSerial returns the serial number of the certificate a new
// connection to addr is given.
func servedSerial(t *testing.T, addr string, cfg *tls.Config) string {
	t.Helper()
	c, err := dialTLS(t, addr, cfg)
	if err != nil {
		t.Fatalf("tls dial %s: %v", addr, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// httpsClient returns a client with its own connections, closed when the
// test ends.
func httpsClient(t *testing.T, cfg *tls.Config) *http.Client {
	tr := &http.Transport{TLSClientConfig: cfg}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: brokertest.Patience(10 * time.Second)}
}

// signUp creates a user over HTTPS and returns its token.
func (n *tlsNode) signUp(t *testing.T, hc *http.Client, id string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"id": id, "password": "password-" + id})
	resp, err := hc.Post(n.https+"/v1/users", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("sign up %s over https: %v", id, err)
	}
	defer resp.Body.Close()
	var out struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("sign up %s over https: %d, %v", id, resp.StatusCode, err)
	}
	return out.Token
}

// mqtts connects an MQTT 5 client (paho.golang) over mqtts.
func (n *tlsNode) mqttsClient(t *testing.T, cfg *tls.Config, user, secret, clientID string) (*brokertest.V5, error) {
	t.Helper()
	conn, err := dialTLS(t, n.mqtts, cfg)
	if err != nil {
		return nil, err
	}
	return n.DialV5(user, secret, clientID, brokertest.V5Options{Conn: conn})
}

// dialWSS opens a WebSocket over TLS to the node's MQTT endpoint.
func (n *tlsNode) dialWSS(t *testing.T, cfg *tls.Config) (*websocket.Conn, error) {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, TLSClientConfig: cfg, HandshakeTimeout: brokertest.Patience(5 * time.Second)}
	ws, resp, err := d.Dial("wss://"+n.WS+"/mqtt", nil)
	if resp != nil {
		resp.Body.Close()
	}
	return ws, err
}

// wssClient connects an MQTT 5 client over wss.
func (n *tlsNode) wssClient(t *testing.T, cfg *tls.Config, user, secret, clientID string) (*brokertest.V5, error) {
	t.Helper()
	ws, err := n.dialWSS(t, cfg)
	if err != nil {
		return nil, err
	}
	return n.DialV5(user, secret, clientID, brokertest.V5Options{Conn: brokertest.WSConn(ws)})
}

// mosquittoPub runs Debian's mosquitto_pub (MQTT 3.1.1) over mqtts, trusting
// the CA in cafile. The test fails, never skips, without it.
func (n *tlsNode) mosquittoPub(t *testing.T, cafile, user, secret, clientID, topic, msg string) ([]byte, error) {
	t.Helper()
	bin, err := exec.LookPath("mosquitto_pub")
	if err != nil {
		t.Fatalf("mosquitto_pub is needed for this test (Debian package mosquitto-clients): %v", err)
	}
	host, port, _ := net.SplitHostPort(n.mqtts)
	cmd := exec.CommandContext(brokertest.Ctx(t, 10*time.Second), bin, "-h", host, "-p", port, "--cafile", cafile,
		"-u", user, "-P", secret, "-i", clientID, "-q", "1", "-t", topic, "-m", msg)
	return cmd.CombinedOutput()
}

// TestTLSListeners: real clients over each TLS listener — paho over mqtts,
// paho over wss, mosquitto_pub --cafile over mqtts, an HTTPS GET — chat
// through one node; the plain MQTT listener still serves.
func TestTLSListeners(t *testing.T) {
	n := startTLS(t, "")
	cfg := n.ca.trusting()
	hc := httpsClient(t, cfg)
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := hc.Get(n.https + path)
		if err != nil {
			t.Fatalf("GET %s over https: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.TLS == nil {
			t.Fatalf("GET %s over https: %d %s (tls %v)", path, resp.StatusCode, body, resp.TLS != nil)
		}
	}
	at, bt := n.signUp(t, hc, "alice"), n.signUp(t, hc, "bob")

	bob, err := n.wssClient(t, cfg, "bob", bt, "bob/web")
	if err != nil {
		t.Fatalf("bob over wss: %v", err)
	}
	bob.Sub(t, "u/bob", 1)
	alice, err := n.mqttsClient(t, cfg, "alice", at, "alice/phone")
	if err != nil {
		t.Fatalf("alice over mqtts: %v", err)
	}
	if rc := alice.Pub(t, "u/bob", "over mqtts"); rc != 0 {
		t.Fatalf("PUBACK over mqtts %#x", rc)
	}
	if out, err := n.mosquittoPub(t, n.ca.file, "alice", at, "alice/cli", "u/bob", "over mosquitto"); err != nil {
		t.Fatalf("mosquitto_pub --cafile over mqtts: %v\n%s", err, out)
	}
	var texts []string
	for _, m := range bob.In.WaitN(t, 2, protocol.TypeMsg) {
		e := m.Entry(t)
		texts = append(texts, fmt.Sprintf("%v: %v", e["from"], e["body"].(map[string]any)["text"]))
	}
	if strings.Join(texts, "|") != "alice: over mqtts|alice: over mosquitto" {
		t.Fatalf("bob got %q, want alice's message over mqtts, then over mosquitto_pub", texts)
	}
	if rc := bob.Pub(t, "u/alice", "back over wss"); rc != 0 {
		t.Fatalf("PUBACK over wss %#x", rc)
	}
	// The plain MQTT listener is still there (mqtt.addr); TLS is beside it.
	n.MustV5("alice", at, "alice/plain", brokertest.V5Options{})
}

// TestTLSWrongCARefused: a client that does not trust the node's CA cannot
// connect on any TLS listener, and the node stays ready.
func TestTLSWrongCARefused(t *testing.T) {
	n := startTLS(t, "")
	other := newTestCA(t, n.dir, "Other CA")
	wrong := other.trusting()
	var unknown x509.UnknownAuthorityError
	if c, err := dialTLS(t, n.mqtts, wrong); !errors.As(err, &unknown) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("mqtts with the wrong CA: %v, want x509.UnknownAuthorityError", err)
	}
	if ws, err := n.dialWSS(t, wrong); !errors.As(err, &unknown) {
		if ws != nil {
			ws.Close()
		}
		t.Fatalf("wss with the wrong CA: %v, want x509.UnknownAuthorityError", err)
	}
	if resp, err := httpsClient(t, wrong).Get(n.https + "/healthz"); !errors.As(err, &unknown) {
		if resp != nil {
			resp.Body.Close()
		}
		t.Fatalf("https with the wrong CA: %v, want x509.UnknownAuthorityError", err)
	}
	at := n.signUp(t, httpsClient(t, n.ca.trusting()), "alice")
	out, err := n.mosquittoPub(t, other.file, "alice", at, "alice/cli", "u/alice", "refused")
	if err == nil || !strings.Contains(strings.ToLower(string(out)), "tls") {
		t.Fatalf("mosquitto_pub --cafile (another CA): %v\n%s\nwant a TLS error", err, out)
	}
	resp, err := httpsClient(t, n.ca.trusting()).Get(n.https + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz after refused handshakes: %d", resp.StatusCode)
	}
}

// tlsReloads returns parley_tls_certificate_reloads_total{result}.
func tlsReloads(t *testing.T, n *brokertest.Node, result string) float64 {
	t.Helper()
	mfs, err := n.Srv.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "parley_tls_certificate_reloads_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestTLSReload: replaced certificate files are picked up without a restart
// by new connections on every TLS listener, while open connections go on; a
// bad pair is refused, counted, and the previous certificate stays.
func TestTLSReload(t *testing.T) {
	n := startTLS(t, "")
	cfg := n.ca.trusting()
	hc := httpsClient(t, cfg)
	at, bt := n.signUp(t, hc, "alice"), n.signUp(t, hc, "bob")
	alice, err := n.mqttsClient(t, cfg, "alice", at, "alice/phone")
	if err != nil {
		t.Fatal(err)
	}
	first := servedSerial(t, n.mqtts, cfg)

	// Not a certificate: refused at the next look, the old one stays.
	writeFile(t, n.certFile, []byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"))
	testwait.Until(t, 5*time.Second, "the bad pair to be tried", func() bool {
		if s := servedSerial(t, n.mqtts, cfg); s != first {
			t.Fatalf("serving %s after a bad pair, want the previous %s", s, first)
		}
		return tlsReloads(t, n.Node, "error") >= 1
	})
	if s := servedSerial(t, n.mqtts, cfg); s != first {
		t.Fatalf("serving %s after a bad pair, want the previous %s", s, first)
	}

	want := n.replacePair(t).SerialNumber.String()
	testwait.Until(t, 5*time.Second, "a new connection to see the new certificate", func() bool {
		return servedSerial(t, n.mqtts, cfg) == want
	})
	for name, addr := range map[string]string{"wss": n.WS, "https": n.Srv.HTTPAddr()} {
		if s := servedSerial(t, addr, cfg); s != want {
			t.Errorf("%s serves %s after the reload, want %s", name, s, want)
		}
	}
	resp, err := httpsClient(t, cfg).Get(n.https + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if s := resp.TLS.PeerCertificates[0].SerialNumber.String(); s != want {
		t.Fatalf("GET /healthz saw certificate %s, want %s", s, want)
	}
	if ok, bad := tlsReloads(t, n.Node, "ok"), tlsReloads(t, n.Node, "error"); ok != 1 || bad != 1 {
		t.Fatalf("reloads ok %v, error %v; want 1 and 1", ok, bad)
	}
	// The connection made with the first certificate is still served.
	if rc := alice.Pub(t, "u/bob", "after the reload"); rc != 0 {
		t.Fatalf("PUBACK on the connection opened before the reload %#x", rc)
	}
	bob, err := n.mqttsClient(t, cfg, "bob", bt, "bob/phone")
	if err != nil {
		t.Fatalf("bob after the reload: %v", err)
	}
	bob.Close()
}

// TestTLSClientCertAdmins: with tls.client_ca_file, an administrator signs
// in (MQTT over mqtts or wss, HTTP Basic over https) only with a client
// certificate of that CA whose Common Name is the administrator's name, and
// the password; users need no certificate.
func TestTLSClientCertAdmins(t *testing.T) {
	caDir := t.TempDir()
	admins := newTestCA(t, caDir, "Admin CA")
	n := startTLS(t, admins.file)
	rogue := newTestCA(t, caDir, "Rogue CA")
	adminCert, aliceCert := admins.clientCert(t, brokertest.Admin), admins.clientCert(t, "alice")
	rogueCert := rogue.clientCert(t, brokertest.Admin)
	with := n.ca.trusting
	at := n.signUp(t, httpsClient(t, with()), "alice")

	cases := map[string]struct {
		dial func(t *testing.T) (*brokertest.V5, error)
		code byte // CONNACK reason code
	}{
		"admin with its certificate, mqtts": {func(t *testing.T) (*brokertest.V5, error) {
			return n.mqttsClient(t, with(adminCert), brokertest.Admin, brokertest.AdminPassword, "admin-mqtts")
		}, 0},
		"admin with its certificate, wss": {func(t *testing.T) (*brokertest.V5, error) {
			return n.wssClient(t, with(adminCert), brokertest.Admin, brokertest.AdminPassword, "admin-wss")
		}, 0},
		"admin with its certificate, wrong password": {func(t *testing.T) (*brokertest.V5, error) {
			return n.mqttsClient(t, with(adminCert), brokertest.Admin, "wrong-password", "admin-guess")
		}, 0x86},
		"admin without a certificate": {func(t *testing.T) (*brokertest.V5, error) {
			return n.mqttsClient(t, with(), brokertest.Admin, brokertest.AdminPassword, "admin-nocert")
		}, 0x86},
		"admin with a certificate naming another": {func(t *testing.T) (*brokertest.V5, error) {
			return n.mqttsClient(t, with(aliceCert), brokertest.Admin, brokertest.AdminPassword, "admin-alicecert")
		}, 0x86},
		"admin on plain MQTT": {func(t *testing.T) (*brokertest.V5, error) {
			return n.DialV5(brokertest.Admin, brokertest.AdminPassword, "admin-plain", brokertest.V5Options{})
		}, 0x86},
		"user without a certificate": {func(t *testing.T) (*brokertest.V5, error) {
			return n.mqttsClient(t, with(), "alice", at, "alice/phone")
		}, 0},
		"user with a certificate": {func(t *testing.T) (*brokertest.V5, error) {
			return n.mqttsClient(t, with(aliceCert), "alice", at, "alice/laptop")
		}, 0},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			v, err := c.dial(t)
			if c.code == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				v.Close()
				return
			}
			if err == nil || v == nil || v.Connack == nil || v.Connack.ReasonCode != c.code {
				if err == nil {
					v.Close()
				}
				t.Fatalf("connect: %v (connack %+v), want CONNACK %#x", err, v, c.code)
			}
		})
	}

	// A certificate of another CA fails the TLS handshake itself: no
	// CONNACK at all. (With TLS 1.3 the client learns it at its first read.)
	t.Run("admin with a certificate of another CA", func(t *testing.T) {
		v, err := n.mqttsClient(t, with(rogueCert), brokertest.Admin, brokertest.AdminPassword, "admin-rogue")
		if err == nil || (v != nil && v.Connack != nil) {
			if err == nil {
				v.Close()
			}
			t.Fatalf("connect with a rogue certificate: %v, want the TLS handshake refused", err)
		}
	})

	admin := func(cfg *tls.Config) int {
		t.Helper()
		req, err := http.NewRequest("GET", n.https+"/v1/cluster", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth(brokertest.Admin, brokertest.AdminPassword)
		resp, err := httpsClient(t, cfg).Do(req)
		if err != nil {
			t.Fatalf("GET /v1/cluster: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := admin(with(adminCert)); code != http.StatusOK {
		t.Errorf("admin over https with its certificate: %d, want 200", code)
	}
	if code := admin(with()); code != http.StatusUnauthorized {
		t.Errorf("admin over https without a certificate: %d, want 401", code)
	}
	if code := admin(with(aliceCert)); code != http.StatusUnauthorized {
		t.Errorf("admin over https with alice's certificate: %d, want 401", code)
	}
}

// TestTLSListenTaken: a taken port of a TLS listener is reported with the
// listener's name and the setting that moves it, like the plain ones.
func TestTLSListenTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	dir := t.TempDir()
	ca := newTestCA(t, dir, "Parley Test CA")
	c, k := ca.issue(t, "parley server", false)
	certFile, keyFile := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	writeFile(t, certFile, c)
	writeFile(t, keyFile, k)

	st, err := postgres.Open(context.Background(), postgres.Config{URL: brokertest.NewDatabase(t)}, brokertest.Logger(t, "store"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	accounts, err := auth.New(auth.Config{BcryptCost: 4}, st)
	if err != nil {
		t.Fatal(err)
	}
	free := "127.0.0.1:0"
	cases := map[string]struct {
		mqtts, ws, http string
		want            []string
	}{
		"mqtts": {addr, free, free, []string{"MQTT over TLS listener on " + addr, "mqtt.tls_addr", "PARLEY_MQTT_TLS_ADDR", "-mqtt.tls_addr"}},
		"wss":   {free, addr, free, []string{"MQTT-over-WebSocket (TLS) listener on " + addr, "ws.addr", "PARLEY_WS_ADDR"}},
		"https": {free, free, addr, []string{"HTTPS listener on " + addr, "http.addr", "PARLEY_HTTP_ADDR"}},
	}
	for name, cs := range cases {
		t.Run(name, func(t *testing.T) {
			srv, err := broker.New(broker.Config{MQTTAddr: free, WSAddr: cs.ws, HTTPAddr: cs.http,
				TLS: broker.TLSConfig{CertFile: certFile, KeyFile: keyFile, MQTTAddr: cs.mqtts, WS: true, HTTP: true}},
				broker.Deps{Store: st, Accounts: accounts, Log: brokertest.Logger(t, "parley")})
			if err != nil {
				t.Fatal(err)
			}
			err = srv.Start(context.Background())
			if err == nil {
				srv.Close()
				t.Fatal("started on a taken port")
			}
			for _, w := range append(cs.want, "address already in use") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}

	// Certificates that cannot be used are refused at start.
	for name, tc := range map[string]broker.TLSConfig{
		"key missing":           {CertFile: certFile},
		"client CAs, no cert":   {ClientCAFile: ca.file},
		"key file holds no key": {CertFile: certFile, KeyFile: ca.file},
		"client CAs not PEM":    {CertFile: certFile, KeyFile: keyFile, ClientCAFile: keyFile},
		"certificate not there": {CertFile: filepath.Join(dir, "nope.crt"), KeyFile: keyFile},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := broker.New(broker.Config{TLS: tc}, broker.Deps{Store: st, Accounts: accounts}); err == nil {
				t.Fatalf("New accepted %+v", tc)
			}
		})
	}
}
