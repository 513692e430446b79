// Package protocol is Parley's wire contract: the MQTT topics clients use, the
// JSON payloads they publish, the stamped entries the server delivers, and the
// reason codes it answers with. It has no dependencies beyond the standard
// library so that the server, the load tester, the tests and client authors'
// tools can all import it. docs/protocol.md describes the same contract in prose.
package protocol
