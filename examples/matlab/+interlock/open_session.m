function id = open_session(varargin)
%OPEN_SESSION Open an interlock session; returns its id (a char row).
%   id = interlock.open_session(name)
%   id = interlock.open_session(name, 'Metadata', meta, 'TTL', seconds)
%   id = interlock.open_session(eng, name, ...)   % eng from interlock.connect
%
%   Metadata is a struct (encoded as JSON) or a JSON object as text; TTL is the
%   number of seconds without activity after which the session expires (Inf: the
%   engine's default: no expiry for this process's engine, the SessionTTL of
%   interlock.connect for a connected one). The session ends with
%   interlock.close_session (or, for a connected engine, interlock.disconnect).
  eng = {};
  if nargin > 0 && isa(varargin{1}, 'uint64')
    eng = varargin(1);
    varargin(1) = [];
  end
  if isempty(varargin)
    error('interlock:invalidArgument', 'interlock.open_session needs a name');
  end
  p = inputParser;
  p.addParameter('Metadata', []);
  p.addParameter('TTL', Inf);
  p.parse(varargin{2:end});
  meta = p.Results.Metadata;
  if isstruct(meta)
    meta = jsonencode(meta);
  end
  id = interlock_mex('open', eng{:}, varargin{1}, meta, p.Results.TTL);
end
