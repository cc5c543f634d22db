function n = force_release(varargin)
%FORCE_RELEASE Release every holder of a resource; returns how many there were.
%   n = interlock.force_release(resource)
%   n = interlock.force_release(resource, reason)
%   n = interlock.force_release(eng, resource, reason)   % eng from interlock.connect
%
%   The holders' leases are lost: their release raises interlock:lockLost. On a
%   server with tokens this needs the admin role (else interlock:permissionDenied).
  eng = {};
  if nargin > 0 && isa(varargin{1}, 'uint64')
    eng = varargin(1);
    varargin(1) = [];
  end
  if isempty(varargin)
    error('interlock:invalidArgument', 'interlock.force_release needs a resource');
  end
  reason = [];
  if numel(varargin) > 1
    reason = varargin{2};
  end
  n = interlock_mex('force_release', eng{:}, varargin{1}, reason);
end
