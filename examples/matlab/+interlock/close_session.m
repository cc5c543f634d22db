function n = close_session(session)
%CLOSE_SESSION Close a session: release its leases (returns how many) and end
%   its waits. Closing a session that already ended returns 0; an id never
%   seen raises interlock:notFound.
  n = interlock_mex('close', session);
end
