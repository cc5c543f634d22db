function st = status(resource, format)
%STATUS The status of a resource: holders and waiters (never a token).
%   st   = interlock.status(resource)          % a struct (via jsondecode)
%   json = interlock.status(resource, 'json')  % the JSON text
%
%   Fields: resource, locked, mode, holders (session_id, session_name, metadata,
%   mode, fence, priority, acquired_at, expires_at, remaining, stale, reason) and
%   waiters (session_id, session_name, mode, priority, position, queued_at).
  json = interlock_mex('status', resource);
  if nargin > 1 && strcmpi(format, 'json')
    st = json;
  else
    st = jsondecode(json);
  end
end
