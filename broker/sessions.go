package broker

// Connected reports whether a client id has a live connection on this node.
// Tests use it to wait for a disconnect to be handled; an operator's view of
// the node's clients can build on it.
func (s *Server) Connected(clientID string) bool {
	cl, ok := s.mqtt.Clients.Get(clientID)
	return ok && !cl.Closed()
}

// ClusterConnected reports whether the node is connected to its cluster's
// bus (false on a single node).
func (s *Server) ClusterConnected() bool { return s.bus != nil && s.bus.Check() == nil }
