% A scenario process in GNU Octave, through the MEX gateway and +interlock: the command
% language of worker_py.py (its docstring), the common commands only:
%
%   connect URL TTL
%   open NAME
%   acquire RES MODE PRIO PREEMPT TIMEOUT BREAK_STALE HOLD
%   release RES
%   ping
%   sleep S
%   exit
%
% The gateway's acquire takes a mode, a timeout and a TTL only: an acquire that asks for
% another priority, preempt or break_stale is refused here ("unsupported"), and a lost
% lease is seen when its release fails with interlock:lockLost (the gateway has no
% on_lost). Commands run one after the other; an acquire blocks, as it does for a user.
% Each event goes to stdout as one JSON line {"ev", "t" (time(), unix seconds), ...}.
% Run as: octave-cli --eval "addpath(GATEWAY_DIR); addpath(EXAMPLES_MATLAB); source(THIS)"

1;

function emit(ev, t, varargin)
  s = struct('ev', ev, 't', t);
  for k = 1:2:numel(varargin)
    s.(varargin{k}) = varargin{k + 1};
  end
  printf('%s\n', jsonencode(s));
  fflush(stdout);
end

function v = seconds_of(word)
  if any(strcmp(word, {'inf', 'none', '-'}))
    v = Inf;
  else
    v = str2double(word);
  end
end

eng = [];
me = '';
leases = struct();   % by field name: the resource, made a valid field name
keys = struct();

emit('ready', time(), 'pid', getpid(), 'lang', 'octave');
while true
  line = fgetl(stdin);
  if ~ischar(line)
    break;
  end
  w = strsplit(strtrim(line));
  if isempty(w) || isempty(w{1})
    continue;
  end
  cmd = w{1};
  if strcmp(cmd, 'exit')
    break;
  end
  try
    switch cmd
      case 'connect'
        eng = interlock.connect(w{2}, [], 'SessionTTL', str2double(w{3}));
        emit('connected', time(), 'url', w{2}, 'pid', getpid());
      case 'open'
        me = interlock.open_session(eng, w{2}, 'Metadata', struct('pid', getpid(), 'lang', 'octave'));
        emit('opened', time(), 'session', me, 'name', w{2});
      case 'acquire'
        res = w{2};
        mode = w{3};
        prio = str2double(w{4});
        preempt = str2double(w{5});
        timeout = seconds_of(w{6});
        break_stale = str2double(w{7});
        hold = str2double(w{8});
        if prio ~= 100 || preempt ~= 0 || break_stale ~= 0
          emit('acquire_failed', time(), 'res', res, 'error', 'unsupported', ...
               'message', 'the MEX gateway takes no priority, preempt or break_stale');
          continue;
        end
        emit('acquiring', time(), 'res', res, 'mode', mode, 'priority', prio, 'session', me);
        try
          lease = interlock.acquire(eng, me, res, 'Mode', mode, 'Timeout', timeout);
        catch err
          emit('acquire_failed', time(), 'res', res, 'error', err.identifier, 'message', err.message);
          continue;
        end
        t = time();
        key = matlab.lang.makeValidName(res);
        leases.(key) = lease;
        emit('granted', t, 'res', res, 'fence', lease.fence, 'mode', lease.mode, ...
             'session', me, 'acquired_at', lease.acquired_at);
        if hold >= 0
          pause(hold);
          w = {'release', res};
          cmd = 'release';
        end
    end
    if strcmp(cmd, 'release')
      res = w{2};
      key = matlab.lang.makeValidName(res);
      if ~isfield(leases, key)
        emit('release_failed', time(), 'res', res, 'error', 'NoLease');
        continue;
      end
      lease = leases.(key);
      emit('releasing', time(), 'res', res, 'fence', lease.fence);
      try
        interlock.release(lease);
        emit('released', time(), 'res', res, 'fence', lease.fence);
      catch err
        emit('release_failed', time(), 'res', res, 'fence', lease.fence, ...
             'error', err.identifier, 'message', err.message);
      end
    elseif strcmp(cmd, 'ping')
      start = time();
      failures = 0;
      while true
        try
          interlock.status(eng, 'ping');
          break;
        catch err
          failures = failures + 1;
          if ~strcmp(err.identifier, 'interlock:connectionLost') || time() - start > 30
            emit('ping_failed', time(), 'error', err.identifier);
            break;
          end
          pause(0.02);
        end
      end
      emit('pong', time(), 'waited', time() - start, 'failures', failures);
    elseif strcmp(cmd, 'sleep')
      pause(str2double(w{2}));
    elseif ~any(strcmp(cmd, {'connect', 'open', 'acquire'}))
      emit('error', time(), 'error', 'UnknownCommand', 'message', line);
    end
  catch err
    emit('error', time(), 'error', err.identifier, 'message', err.message, 'command', line);
  end
end
emit('bye', time());
if ~isempty(eng)
  interlock.disconnect(eng);
end
