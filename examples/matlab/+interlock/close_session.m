function n = close_session(varargin)
%CLOSE_SESSION Close a session: release its leases (returns how many) and end
%   its waits. Closing a session that already ended returns 0; an id never
%   seen raises interlock:notFound.
%   n = interlock.close_session(session)
%   n = interlock.close_session(eng, session)   % eng from interlock.connect
  n = interlock_mex('close', varargin{:});
end
