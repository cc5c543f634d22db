% The MATLAB/Octave interface (examples/matlab): lock, contend from a second session
% with a timeout, catch interlock:timeout, release, status, force release, close; then
% the same through interlock.connect to a server, seen from another client (a second
% connection, and plain HTTP with webread).
% Run by tests/c/run.sh with the MEX file and examples/matlab on the path, and with a
% server it started (`interlock serve` with a tokens file) named by INTERLOCK_TEST_URL,
% INTERLOCK_TEST_TOKEN (role client) and INTERLOCK_TEST_ADMIN_TOKEN. Prints
% "ok - name" or "FAIL - name" per test and ends with an error if any failed.
1;

function expect_error(id, f)
  try
    f();
  catch err
    if ~strcmp(err.identifier, id)
      error('test:wrongError', 'expected %s, got %s: %s', id, err.identifier, err.message);
    end
    return;
  end
  error('test:noError', 'expected %s, but no error was raised', id);
end

function check(cond, what)
  if ~cond
    error('test:check', 'check failed: %s', what);
  end
end

% Runs one test now; returns 1 if it failed.
function failed = t(name, f)
  try
    f();
    printf('ok - octave: %s\n', name);
    failed = 0;
  catch err
    printf('FAIL - octave: %s\n  %s\n', name, err.message);
    failed = 1;
  end
end

failures = 0;

optimizer = interlock.open_session('optimizer', 'Metadata', struct('user', 'ana'));
ui = interlock.open_session('ui', 'TTL', 600);

failures += t('open_session returns an id', @() check(numel(optimizer) == 36 && ~strcmp(optimizer, ui), 'two distinct 36-char ids'));

lease = interlock.acquire(optimizer, 'reactor-1', 'Timeout', 5);
failures += t('acquire returns a lease', @() check(numel(lease.token) == 36 && lease.fence > 0 && strcmp(lease.mode, 'exclusive') && isinf(lease.expires_at), 'lease fields'));

failures += t('a second session times out with interlock:timeout', @() expect_error('interlock:timeout', @() interlock.acquire(ui, 'reactor-1', 'Timeout', 0.1)));

failures += t('acquiring twice is interlock:alreadyHeld', @() expect_error('interlock:alreadyHeld', @() interlock.acquire(optimizer, 'reactor-1', 'Timeout', 0)));

st = interlock.status('reactor-1');
failures += t('status is a struct with the holder', @() check(st.locked && strcmp(st.mode, 'exclusive') && strcmp(st.holders(1).session_name, 'optimizer') && strcmp(st.holders(1).metadata.user, 'ana') && isempty(st.waiters), 'status fields'));

json = interlock.status('reactor-1', 'json');
failures += t('status as JSON never shows the token', @() check(ischar(json) && isempty(strfind(json, lease.token)) && ~isempty(strfind(json, '"locked":true')), 'json status'));

interlock.release(lease);
st = interlock.status('reactor-1');
failures += t('release frees the resource', @() check(~st.locked && isempty(st.holders), 'unlocked after release'));

failures += t('releasing twice is interlock:invalidToken', @() expect_error('interlock:invalidToken', @() interlock.release(lease)));

shared1 = interlock.acquire(optimizer, 'scope', 'Mode', 'shared', 'Timeout', 0);
shared2 = interlock.acquire(ui, 'scope', 'Mode', 'observer', 'Timeout', 0);
st = interlock.status('scope');
failures += t('two shared holders', @() check(numel(st.holders) == 2 && strcmp(st.mode, 'shared') && strcmp(shared2.mode, 'shared'), 'shared status'));

n = interlock.force_release('scope', 'maintenance');
failures += t('force_release counts the holders', @() check(n == 2, 'two released'));
failures += t('a force-released lease is interlock:lockLost', @() expect_error('interlock:lockLost', @() interlock.release(shared1)));
failures += t('force_release of a free resource gives 0', @() check(interlock.force_release('scope') == 0, 'nothing held'));

failures += t('bad arguments are interlock:invalidArgument', @() expect_error('interlock:invalidArgument', @() interlock.acquire(ui, '', 'Timeout', 0)));
failures += t('an unknown mode is interlock:invalidArgument', @() expect_error('interlock:invalidArgument', @() interlock.acquire(ui, 'r', 'Mode', 'driver')));
failures += t('a NaN timeout is interlock:invalidArgument', @() expect_error('interlock:invalidArgument', @() interlock.acquire(ui, 'r', 'Timeout', NaN)));

lease = interlock.acquire(ui, 'reactor-1', 'Timeout', 1, 'TTL', 60);
failures += t('a lease with a TTL expires', @() check(isfinite(lease.expires_at) && lease.expires_at > lease.acquired_at, 'finite expiry'));
interlock.heartbeat(ui);
released = interlock.close_session(ui);
st = interlock.status('reactor-1');
failures += t('close_session releases the leases', @() check(released == 1 && ~st.locked, 'one released'));
failures += t('closing again releases nothing', @() check(interlock.close_session(ui) == 0, 'zero released'));
failures += t('a closed session cannot acquire', @() expect_error('interlock:notFound', @() interlock.acquire(ui, 'r', 'Timeout', 0)));
interlock.close_session(optimizer);

% ----- a connected engine -------------------------------------------------------
url = getenv('INTERLOCK_TEST_URL');
token = getenv('INTERLOCK_TEST_TOKEN');
admin_token = getenv('INTERLOCK_TEST_ADMIN_TOKEN');
failures += t('a server to connect to is given', @() check(~isempty(url) && ~isempty(token) && ~isempty(admin_token), 'INTERLOCK_TEST_URL and its tokens are set (tests/c/run.sh starts interlock serve)'));

% The HTTP API, as plain webread sees it (Octave's webread gives the JSON text; MATLAB's
% decodes it).
function st = http_status(url, token, resource)
  body = webread([url '/v1/locks/' resource], weboptions('HeaderFields', {'Authorization', ['Bearer ' token]}));
  if ischar(body)
    st = jsondecode(body);
  else
    st = body;
  end
end

if ~isempty(url)
  failures += t('a wrong token is interlock:permissionDenied', @() expect_error('interlock:permissionDenied', @() interlock.connect(url, 'wrong-token-0123456789')));
  failures += t('no token is interlock:permissionDenied', @() expect_error('interlock:permissionDenied', @() interlock.connect(url)));
  failures += t('a malformed URL is interlock:invalidArgument', @() expect_error('interlock:invalidArgument', @() interlock.connect('localhost:7411', token)));

  eng = interlock.connect(url, token);
  other = interlock.connect(url, admin_token, 'SessionTTL', 30);
  failures += t('connect returns a handle', @() check(isa(eng, 'uint64') && isscalar(eng) && eng ~= other, 'two distinct uint64 handles'));

  me = interlock.open_session(eng, 'octave', 'Metadata', struct('user', 'ana'));
  failures += t('a remote session id', @() check(numel(me) == 36, 'a 36-char id'));
  lease = interlock.acquire(eng, me, 'psu', 'Timeout', 5);
  failures += t('a remote lease knows its engine', @() check(lease.engine == eng && numel(lease.token) == 36 && lease.fence > 0, 'lease fields'));

  st = interlock.status(other, 'psu');
  failures += t('another client sees the lock', @() check(st.locked && strcmp(st.holders(1).session_name, 'octave') && strcmp(st.holders(1).metadata.user, 'ana') && st.holders(1).fence == lease.fence, 'status through a second connection'));
  st = interlock.status(eng, 'psu');
  failures += t('a client sees the metadata of its own session', @() check(st.locked && strcmp(st.holders(1).metadata.user, 'ana'), 'own metadata'));
  st = http_status(url, token, 'psu');
  failures += t('plain HTTP sees the lock', @() check(st.locked && strcmp(st.holders(1).session_name, 'octave'), 'GET /v1/locks/psu'));
  failures += t('a client token does not see the metadata of sessions it is not', @() check(isstruct(st.holders(1).metadata) && isempty(fieldnames(st.holders(1).metadata)), 'only admin tokens see all metadata (others: {})'));
  st = interlock.status('psu');
  failures += t('this process''s own engine is another engine', @() check(~st.locked, 'not locked here'));

  you = interlock.open_session(other, 'other client');
  failures += t('another client times out on the held lock', @() expect_error('interlock:timeout', @() interlock.acquire(other, you, 'psu', 'Timeout', 0.1)));
  failures += t('a client token may not force release', @() expect_error('interlock:permissionDenied', @() interlock.force_release(eng, 'psu')));
  interlock.heartbeat(eng, me);

  interlock.release(lease);
  st = interlock.status(other, 'psu');
  failures += t('release through the connection frees it for everyone', @() check(~st.locked && isempty(st.holders), 'unlocked'));
  st = http_status(url, token, 'psu');
  failures += t('plain HTTP sees it free', @() check(~st.locked, 'GET /v1/locks/psu'));
  failures += t('releasing twice is interlock:invalidToken', @() expect_error('interlock:invalidToken', @() interlock.release(lease)));

  theirs = interlock.acquire(other, you, 'psu', 'Timeout', 5);
  failures += t('the other client gets it now', @() check(theirs.fence > lease.fence, 'a later fence'));
  failures += t('an admin may force release', @() check(interlock.force_release(other, 'psu', 'maintenance') == 1, 'one released'));
  failures += t('a force-released remote lease is interlock:lockLost', @() expect_error('interlock:lockLost', @() interlock.release(theirs)));

  mine = interlock.acquire(eng, me, 'scope', 'Mode', 'shared', 'Timeout', 5);
  failures += t('close_session through the connection', @() check(interlock.close_session(eng, me) == 1, 'one released'));
  interlock.disconnect(eng);
  failures += t('a disconnected handle is interlock:invalidArgument', @() expect_error('interlock:invalidArgument', @() interlock.status(eng, 'psu')));
  interlock.disconnect(other);
  left = webread([url '/v1/sessions'], weboptions('HeaderFields', {'Authorization', ['Bearer ' admin_token]}));
  if ischar(left)
    left = jsondecode(left);
  end
  failures += t('disconnect ends the sessions', @() check(isempty(left), 'GET /v1/sessions is []'));
end

if failures > 0
  error('test:failed', '%d Octave test(s) failed', failures);
end
