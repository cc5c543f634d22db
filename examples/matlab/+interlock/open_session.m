function id = open_session(name, varargin)
%OPEN_SESSION Open an interlock session; returns its id (a char row).
%   id = interlock.open_session(name)
%   id = interlock.open_session(name, 'Metadata', meta, 'TTL', seconds)
%
%   Metadata is a struct (encoded as JSON) or a JSON object as text; TTL is the
%   number of seconds without activity after which the session expires (Inf: the
%   engine's default, no expiry). The session ends with interlock.close_session.
  p = inputParser;
  p.addParameter('Metadata', []);
  p.addParameter('TTL', Inf);
  p.parse(varargin{:});
  meta = p.Results.Metadata;
  if isstruct(meta)
    meta = jsonencode(meta);
  end
  id = interlock_mex('open', name, meta, p.Results.TTL);
end
