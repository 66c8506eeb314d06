package commune

func (s *Server) onEvent(site string, payload []byte)                {}
func (s *Server) onPresence(site string, payload string)             {}
func (s *Server) kickResend()                                        {}
func (s *Server) resendLoop(ctx interface{ Done() <-chan struct{} }) { <-ctx.Done() }
func (s *Server) extraRoutes()                                       {}
