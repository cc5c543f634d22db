function lease = acquire(session, resource, varargin)
%ACQUIRE Acquire a resource for a session; returns the lease as a struct.
%   lease = interlock.acquire(session, resource)
%   lease = interlock.acquire(session, resource, 'Timeout', 5, 'Mode', 'shared', 'TTL', 60)
%
%   Mode is 'exclusive' (default), 'shared' or 'observer'. Timeout is in seconds:
%   Inf (default) waits forever, 0 tries once. TTL (seconds) makes the lease expire
%   unless renewed; Inf uses the engine's default (none).
%   The lease has fields resource, token, mode, fence, acquired_at, expires_at
%   (unix seconds; Inf if none). Keep it to release the lock.
%
%   Errors: interlock:timeout, interlock:alreadyHeld, interlock:deadlock,
%   interlock:notFound, interlock:sessionExpired, interlock:invalidArgument.
%   A blocked acquire cannot be interrupted with Ctrl-C: prefer a finite Timeout.
  p = inputParser;
  p.addParameter('Mode', 'exclusive');
  p.addParameter('Timeout', Inf);
  p.addParameter('TTL', Inf);
  p.parse(varargin{:});
  lease = interlock_mex('acquire', session, resource, p.Results.Mode, ...
                        p.Results.Timeout, p.Results.TTL);
end
