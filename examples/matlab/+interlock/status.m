function st = status(varargin)
%STATUS The status of a resource: holders and waiters (never a token).
%   st   = interlock.status(resource)          % a struct (via jsondecode)
%   json = interlock.status(resource, 'json')  % the JSON text
%   st   = interlock.status(eng, resource, ...)   % eng from interlock.connect
%
%   Fields: resource, locked, mode, holders (session_id, session_name, metadata,
%   mode, fence, priority, acquired_at, expires_at, remaining, stale, reason) and
%   waiters (session_id, session_name, mode, priority, position, queued_at).
  eng = {};
  if nargin > 0 && isa(varargin{1}, 'uint64')
    eng = varargin(1);
    varargin(1) = [];
  end
  if isempty(varargin)
    error('interlock:invalidArgument', 'interlock.status needs a resource');
  end
  json = interlock_mex('status', eng{:}, varargin{1});
  if numel(varargin) > 1 && strcmpi(varargin{2}, 'json')
    st = json;
  else
    st = jsondecode(json);
  end
end
