function lease = acquire(varargin)
%ACQUIRE Acquire a resource for a session; returns the lease as a struct.
%   lease = interlock.acquire(session, resource)
%   lease = interlock.acquire(session, resource, 'Timeout', 5, 'Mode', 'shared', 'TTL', 60)
%   lease = interlock.acquire(eng, session, resource, ...)   % eng from interlock.connect
%
%   Mode is 'exclusive' (default), 'shared' or 'observer'. Timeout is in seconds:
%   Inf (default) waits forever, 0 tries once. TTL (seconds) makes the lease expire
%   unless renewed; Inf uses the engine's default (none).
%   The lease has fields resource, token, mode, fence, acquired_at, expires_at
%   (unix seconds; Inf if none) and engine. Keep it to release the lock.
%
%   Errors: interlock:timeout, interlock:alreadyHeld, interlock:deadlock,
%   interlock:notFound, interlock:sessionExpired, interlock:invalidArgument, and for
%   a connected engine interlock:connectionLost and interlock:permissionDenied.
%   A blocked acquire cannot be interrupted with Ctrl-C: prefer a finite Timeout.
  eng = {};
  if nargin > 0 && isa(varargin{1}, 'uint64')
    eng = varargin(1);
    varargin(1) = [];
  end
  if numel(varargin) < 2
    error('interlock:invalidArgument', 'interlock.acquire needs a session and a resource');
  end
  [session, resource] = varargin{1:2};
  p = inputParser;
  p.addParameter('Mode', 'exclusive');
  p.addParameter('Timeout', Inf);
  p.addParameter('TTL', Inf);
  p.parse(varargin{3:end});
  lease = interlock_mex('acquire', eng{:}, session, resource, p.Results.Mode, ...
                        p.Results.Timeout, p.Results.TTL);
end
