package commune

func (s *Server) appRoutes() {}
