% The MATLAB/Octave interface (examples/matlab): lock, contend from a second session
% with a timeout, catch interlock:timeout, release, status, force release, close.
% Run by tests/c/run.sh with the MEX file and examples/matlab on the path. Prints
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

if failures > 0
  error('test:failed', '%d Octave test(s) failed', failures);
end
