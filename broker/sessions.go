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

// HasSession reports whether the node holds a session (connected or not)
// for a client id.
func (s *Server) HasSession(clientID string) bool {
	_, ok := s.mqtt.Clients.Get(clientID)
	return ok
}

// Subscribed reports whether a client id holds a subscription to filter on
// this node.
func (s *Server) Subscribed(clientID, filter string) bool {
	cl, ok := s.mqtt.Clients.Get(clientID)
	if !ok {
		return false
	}
	_, ok = cl.State.Subscriptions.Get(filter)
	return ok
}

// UserShare returns how many nodes of the cluster a user's publish rate is
// split between on this node, as this node last counted them: 0 if it never
// did (a single node, a user who has not published here lately, or no
// answer yet), which means the whole rate (limits.user_rate).
func (s *Server) UserShare(user string) int { return s.inbox.UserShare(user) }
