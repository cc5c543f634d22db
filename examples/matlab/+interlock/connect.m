function eng = connect(url, varargin)
%CONNECT Connect to the engine an interlock server serves; returns its handle.
%   eng = interlock.connect(url)
%   eng = interlock.connect(url, token)
%   eng = interlock.connect(url, token, 'SessionTTL', 15, 'CAFile', 'lab-ca.pem')
%
%   url is what the server prints ('http://HOST:PORT', or 'https://...'), e.g. from
%   `interlock serve --bind 0.0.0.0:7411 --tokens tokens.txt`. token is one of the
%   server's tokens (a line "ROLE TOKEN" of its tokens file); leave it out, or give
%   [], for a server without tokens. SessionTTL (seconds, default 15) is the TTL of
%   sessions opened through this engine without one: the library heartbeats them by
%   itself, and if the server cannot be reached for that long their leases are lost.
%   CAFile is a PEM file of certificates to trust for https (a lab's own CA).
%
%   eng (a uint64 handle) goes first to every other function, which then acts on the
%   server's engine instead of this process's own:
%     me    = interlock.open_session(eng, 'Optimizer');
%     lease = interlock.acquire(eng, me, 'psu', 'Timeout', 5);
%     st    = interlock.status(eng, 'psu');
%     interlock.release(lease);            % a lease knows its engine
%     interlock.disconnect(eng);           % closes its sessions: their locks go
%
%   Errors: interlock:connectionLost (the server cannot be reached; also from later
%   calls while it is away, it reconnects by itself), interlock:permissionDenied (the
%   token is wrong or missing, or its role does not allow a call),
%   interlock:invalidArgument (a malformed URL or option).
  token = [];
  if ~isempty(varargin) && (isempty(varargin{1}) || ...
      (ischar(varargin{1}) && ~any(strcmpi(varargin{1}, {'SessionTTL', 'CAFile'}))))
    token = varargin{1};
    varargin(1) = [];
  end
  if isempty(token)
    token = [];
  end
  p = inputParser;
  p.addParameter('SessionTTL', []);
  p.addParameter('CAFile', []);
  p.parse(varargin{:});
  eng = interlock_mex('connect', url, token, p.Results.SessionTTL, p.Results.CAFile);
end
