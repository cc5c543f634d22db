function heartbeat(session)
%HEARTBEAT Record activity of a session, so that its TTL starts again (and a
%   stale session becomes live again).
  interlock_mex('heartbeat', session);
end
