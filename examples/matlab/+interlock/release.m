function release(lease_or_resource, token)
%RELEASE Release a lease.
%   interlock.release(lease)            % the struct interlock.acquire returned
%   interlock.release(resource, token)
%
%   Errors: interlock:lockLost if the lease was lost (preempted, expired,
%   force-released, session expired); interlock:invalidToken if the token is not
%   current (e.g. released twice).
  if isstruct(lease_or_resource)
    interlock_mex('release', lease_or_resource.resource, lease_or_resource.token);
  else
    interlock_mex('release', lease_or_resource, token);
  end
end
