package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/parleychat/parley/broker/brokertest"
	"github.com/parleychat/parley/internal/testwait"
)

// TestSIGTERMWithReconnectingClients: clients that reconnect the moment
// they are disconnected must not keep a draining node alive. Draining
// used to disconnect a listener's clients before closing its socket, so a
// client reconnecting in between was accepted and the drain waited for it
// for ever (4 of 6 shutdowns hung in the Paho interoperability runs).
func TestSIGTERMWithReconnectingClients(t *testing.T) {
	for round := 0; round < 3; round++ {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			c := startChild(t, "PARLEY_DATABASE_PATH="+filepath.Join(t.TempDir(), "parley.db"),
				"PARLEY_LIMITS_CONNECT_RATE_PER_IP=-1")
			n := c.node(t)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var mu sync.Mutex
			connected := 0
			for i := 0; i < 20; i++ {
				user := fmt.Sprintf("u%d", i)
				tok := n.User(user)
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						reconnectOnce(c.mqtt, user, tok, func() {
							mu.Lock()
							connected++
							mu.Unlock()
						})
					}
				}()
			}
			// Everyone has been connected once before the signal.
			testwait.Until(t, 10*time.Second, "20 connections before SIGTERM", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return connected >= 20
			})
			if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case <-c.exited:
			case <-time.After(brokertest.Patience(20 * time.Second)):
				t.Fatal("parley did not exit after SIGTERM with reconnecting clients")
			}
			close(stop)
			wg.Wait()
			if c.exitErr != nil {
				t.Fatalf("exit after SIGTERM: %v", c.exitErr)
			}
		})
	}
}

// reconnectOnce connects as an MQTT 3.1.1 client, calls up once the
// CONNACK accepted it, and stays until the server closes the connection.
func reconnectOnce(addr, user, secret string, up func()) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		// The listener is closed (the node is going): a real client backs
		// off before it redials; this one as little as it can, so that it
		// is ready the moment a listener could take it. A pause that paces
		// a redial loop, not a wait for anything: the test's conditions
		// are waited for with testwait and the process's exit.
		time.Sleep(time.Millisecond)
		return
	}
	defer conn.Close()
	str := func(s string) []byte {
		b := binary.BigEndian.AppendUint16(nil, uint16(len(s)))
		return append(b, s...)
	}
	body := append(str("MQTT"), 4, 0xc2, 0, 60)
	body = append(body, str(user+"/phone")...)
	body = append(body, str(user)...)
	body = append(body, str(secret)...)
	if _, err := conn.Write(append([]byte{0x10, byte(len(body))}, body...)); err != nil {
		return
	}
	ack := make([]byte, 4)
	conn.SetReadDeadline(time.Now().Add(brokertest.Patience(5 * time.Second)))
	if _, err := io.ReadFull(conn, ack); err != nil || ack[3] != 0 {
		return
	}
	up()
	conn.SetReadDeadline(time.Time{})
	_, _ = io.Copy(io.Discard, conn)
}
