function release(varargin)
%RELEASE Release a lease.
%   interlock.release(lease)            % the struct interlock.acquire returned
%   interlock.release(resource, token)
%   interlock.release(eng, resource, token)   % eng from interlock.connect
%
%   Errors: interlock:lockLost if the lease was lost (preempted, expired,
%   force-released, session expired, connection lost); interlock:invalidToken if
%   the token is not current (e.g. released twice).
  if nargin == 1 && isstruct(varargin{1})
    lease = varargin{1};
    eng = {};
    if isfield(lease, 'engine')
      eng = {lease.engine};
    end
    interlock_mex('release', eng{:}, lease.resource, lease.token);
  else
    interlock_mex('release', varargin{:});
  end
end
