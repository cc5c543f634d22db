function heartbeat(varargin)
%HEARTBEAT Record activity of a session, so that its TTL starts again (and a
%   stale session becomes live again).
%   interlock.heartbeat(session)
%   interlock.heartbeat(eng, session)   % eng from interlock.connect (which also
%                                       % heartbeats its sessions by itself)
  interlock_mex('heartbeat', varargin{:});
end
