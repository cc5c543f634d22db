function n = force_release(resource, reason)
%FORCE_RELEASE Release every holder of a resource; returns how many there were.
%   n = interlock.force_release(resource)
%   n = interlock.force_release(resource, reason)
%
%   The holders' leases are lost: their release raises interlock:lockLost.
  if nargin < 2
    reason = [];
  end
  n = interlock_mex('force_release', resource, reason);
end
