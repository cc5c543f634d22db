/* MEX gateway over the interlock C library, for GNU Octave and MATLAB.
 *
 *   eng   = interlock_mex('connect', url, token, session_ttl, ca_file)
 *           interlock_mex('disconnect', eng)
 *   id    = interlock_mex('open', [eng,] name, metadata_json, ttl)
 *           interlock_mex('heartbeat', [eng,] id)
 *   n     = interlock_mex('close', [eng,] id)
 *   lease = interlock_mex('acquire', [eng,] id, resource, mode, timeout, ttl)
 *           interlock_mex('release', [eng,] resource, token)
 *   json  = interlock_mex('status', [eng,] resource)
 *   n     = interlock_mex('force_release', [eng,] resource, reason)
 *
 * Call it through the functions in +interlock/, which supply defaults. Without an
 * engine, a command uses the process's own engine (one per Octave/MATLAB process,
 * created by its first use). `connect` reaches the engine an interlock server serves
 * (`interlock serve`, or any program that serves its engine) and returns a handle: a
 * uint64 scalar that every other command takes as its engine (uint64(0) names the
 * process's own engine). token, session_ttl and ca_file may be [] (or left out) for
 * none / 15 s / none. `disconnect` frees a connected engine: it closes the sessions
 * opened through it, so their locks go at once; its handle is not reused. A lease
 * struct records its engine in the field `engine`.
 *
 * The MEX file stays loaded (mexLock) once it holds an engine, so that `clear all`
 * cannot drop the engines' locks; mexAtExit frees every engine when the process ends.
 * A failure raises an error whose identifier names the status (interlock:timeout,
 * interlock:connectionLost, ...) and whose message is interlock_last_error().
 *
 * Build (Octave):  mkoctfile --mex -I../../include interlock_mex.c \
 *                    <target>/release/libinterlock.a -lpthread -ldl -lm
 * Build (MATLAB):  see README.md. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "interlock.h"
#include "mex.h"

static interlock_engine *own_engine = NULL;

/* Engines from 'connect', by handle; a handle is never reused. */
#define MAX_CONNECTED 64
static struct {
  uint64_t handle; /* 0: a free slot */
  interlock_engine *engine;
} connected[MAX_CONNECTED];
static uint64_t next_handle = 1;

static void free_engines(void) {
  for (int i = 0; i < MAX_CONNECTED; i++) {
    interlock_engine_free(connected[i].engine);
    connected[i].engine = NULL;
    connected[i].handle = 0;
  }
  interlock_engine_free(own_engine);
  own_engine = NULL;
}

/* Keeps the MEX file loaded while it holds an engine, and frees them at exit. */
static void keep_loaded(void) {
  static int kept = 0;
  if (!kept) {
    mexLock();
    mexAtExit(free_engines);
    kept = 1;
  }
}

static const char *error_id(interlock_status status) {
  switch (status) {
    case INTERLOCK_TIMEOUT: return "interlock:timeout";
    case INTERLOCK_INVALID_TOKEN: return "interlock:invalidToken";
    case INTERLOCK_NOT_FOUND: return "interlock:notFound";
    case INTERLOCK_SESSION_EXPIRED: return "interlock:sessionExpired";
    case INTERLOCK_LOCK_LOST: return "interlock:lockLost";
    case INTERLOCK_DEADLOCK: return "interlock:deadlock";
    case INTERLOCK_ALREADY_HELD: return "interlock:alreadyHeld";
    case INTERLOCK_CLOSED: return "interlock:closed";
    case INTERLOCK_INVALID_ARGUMENT: return "interlock:invalidArgument";
    case INTERLOCK_PANIC: return "interlock:panic";
    case INTERLOCK_CANCELLED: return "interlock:cancelled";
    case INTERLOCK_CONNECTION_LOST: return "interlock:connectionLost";
    case INTERLOCK_PERMISSION_DENIED: return "interlock:permissionDenied";
    default: return "interlock:internal";
  }
}

/* Raises the MATLAB error for a failed call; returns only on success. */
static void check(interlock_status status) {
  if (status != INTERLOCK_OK) mexErrMsgIdAndTxt(error_id(status), "%s", interlock_last_error());
}

static void usage(const char *message) {
  mexErrMsgIdAndTxt("interlock:invalidArgument", "interlock_mex: %s", message);
}

static interlock_engine *the_own_engine(void) {
  if (own_engine == NULL) {
    check(interlock_engine_new(NULL, &own_engine));
    keep_loaded();
  }
  return own_engine;
}

static int is_handle(const mxArray *a) {
  return mxIsUint64(a) && mxGetNumberOfElements(a) == 1;
}

static uint64_t handle_value(const mxArray *a) {
  return *(const uint64_t *)mxGetData(a);
}

/* The engine a handle names: 0 is the process's own; raises an error for one that is
 * not (or no longer) connected. */
static interlock_engine *engine_of(uint64_t handle) {
  if (handle == 0) return the_own_engine();
  for (int i = 0; i < MAX_CONNECTED; i++)
    if (connected[i].handle == handle) return connected[i].engine;
  mexErrMsgIdAndTxt("interlock:invalidArgument",
                    "interlock_mex: no connected engine %llu (disconnected?)",
                    (unsigned long long)handle);
  return NULL;
}

/* Argument `i` as a string (freed with the MEX call); "" stays "", [] is NULL. */
static char *string_arg(int nrhs, const mxArray *prhs[], int i, const char *what) {
  if (i >= nrhs) usage(what);
  if (mxIsEmpty(prhs[i]) && !mxIsChar(prhs[i])) return NULL;
  if (!mxIsChar(prhs[i])) mexErrMsgIdAndTxt("interlock:invalidArgument", "%s must be text", what);
  return mxArrayToString(prhs[i]);
}

/* An optional string argument: left out or [] is NULL. */
static char *opt_string_arg(int nrhs, const mxArray *prhs[], int i, const char *what) {
  return i < nrhs ? string_arg(nrhs, prhs, i, what) : NULL;
}

/* Argument `i` as seconds: a real scalar (Inf allowed). */
static double seconds_arg(int nrhs, const mxArray *prhs[], int i, const char *what) {
  if (i >= nrhs) usage(what);
  if (!mxIsNumeric(prhs[i]) || mxIsComplex(prhs[i]) || mxGetNumberOfElements(prhs[i]) != 1)
    mexErrMsgIdAndTxt("interlock:invalidArgument", "%s must be a real number of seconds", what);
  return mxGetScalar(prhs[i]);
}

static mxArray *handle_array(uint64_t handle) {
  mxArray *a = mxCreateNumericMatrix(1, 1, mxUINT64_CLASS, mxREAL);
  *(uint64_t *)mxGetData(a) = handle;
  return a;
}

static mxArray *lease_struct(uint64_t engine, const char *resource, const interlock_lease *l) {
  static const char *fields[] = {"resource",    "token",      "mode",  "fence",
                                 "acquired_at", "expires_at", "engine"};
  mxArray *s = mxCreateStructMatrix(1, 1, 7, fields);
  mxSetField(s, 0, "resource", mxCreateString(resource));
  mxSetField(s, 0, "token", mxCreateString(l->token));
  mxSetField(s, 0, "mode", mxCreateString(l->mode));
  mxSetField(s, 0, "fence", mxCreateDoubleScalar((double)l->fence));
  mxSetField(s, 0, "acquired_at", mxCreateDoubleScalar(l->acquired_at));
  mxSetField(s, 0, "expires_at", mxCreateDoubleScalar(l->expires_at));
  mxSetField(s, 0, "engine", handle_array(engine));
  return s;
}

static void connect_engine(mxArray *plhs[], int nrhs, const mxArray *prhs[]) {
  int slot = -1;
  for (int i = 0; i < MAX_CONNECTED && slot < 0; i++)
    if (connected[i].engine == NULL) slot = i;
  if (slot < 0)
    mexErrMsgIdAndTxt("interlock:invalidArgument",
                      "interlock_mex: %d engines are connected already: disconnect one",
                      MAX_CONNECTED);
  interlock_connect_options o;
  check(interlock_connect_options_init(&o));
  char *url = string_arg(nrhs, prhs, 1, "url");
  if (url == NULL) usage("url");
  o.token = opt_string_arg(nrhs, prhs, 2, "token");
  if (nrhs > 3 && !mxIsEmpty(prhs[3])) o.session_ttl = seconds_arg(nrhs, prhs, 3, "session_ttl");
  o.ca_file = opt_string_arg(nrhs, prhs, 4, "ca_file");
  interlock_engine *e = NULL;
  check(interlock_engine_connect(url, &o, &e));
  keep_loaded();
  connected[slot].engine = e;
  connected[slot].handle = next_handle++;
  plhs[0] = handle_array(connected[slot].handle);
}

static void disconnect_engine(int nrhs, const mxArray *prhs[]) {
  if (nrhs < 2 || !is_handle(prhs[1])) usage("disconnect takes an engine from connect");
  uint64_t handle = handle_value(prhs[1]);
  if (handle == 0) usage("the process's own engine stays until the process ends");
  for (int i = 0; i < MAX_CONNECTED; i++) {
    if (connected[i].handle == handle) {
      interlock_engine *e = connected[i].engine;
      connected[i].engine = NULL;
      connected[i].handle = 0;
      interlock_engine_free(e);
      return;
    }
  }
  engine_of(handle); /* raises the error for an unknown handle */
}

void mexFunction(int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[]) {
  (void)nlhs;
  char *command = string_arg(nrhs, prhs, 0, "a command");
  if (command == NULL) usage("a command");
  if (strcmp(command, "connect") == 0) {
    connect_engine(plhs, nrhs, prhs);
    return;
  }
  if (strcmp(command, "disconnect") == 0) {
    disconnect_engine(nrhs, prhs);
    return;
  }

  /* The engine: an optional handle right after the command. The arguments of each
   * command then start at `a`. */
  uint64_t handle = 0;
  int a = 1;
  if (nrhs > 1 && is_handle(prhs[1])) {
    handle = handle_value(prhs[1]);
    a = 2;
  }
  interlock_engine *e = engine_of(handle);

  if (strcmp(command, "open") == 0) {
    char id[INTERLOCK_ID_SIZE];
    char *name = string_arg(nrhs, prhs, a, "name");
    char *metadata = string_arg(nrhs, prhs, a + 1, "metadata");
    check(interlock_session_open(e, name, metadata, seconds_arg(nrhs, prhs, a + 2, "ttl"), NULL,
                                 id));
    plhs[0] = mxCreateString(id);
  } else if (strcmp(command, "heartbeat") == 0) {
    check(interlock_session_heartbeat(e, string_arg(nrhs, prhs, a, "session")));
  } else if (strcmp(command, "close") == 0) {
    size_t released = 0;
    check(interlock_session_close(e, string_arg(nrhs, prhs, a, "session"), &released));
    plhs[0] = mxCreateDoubleScalar((double)released);
  } else if (strcmp(command, "acquire") == 0) {
    interlock_acquire_options o;
    check(interlock_acquire_options_init(&o));
    char *session = string_arg(nrhs, prhs, a, "session");
    char *resource = string_arg(nrhs, prhs, a + 1, "resource");
    o.mode = string_arg(nrhs, prhs, a + 2, "mode");
    o.timeout = seconds_arg(nrhs, prhs, a + 3, "timeout");
    o.ttl = seconds_arg(nrhs, prhs, a + 4, "ttl");
    interlock_lease lease;
    check(interlock_acquire(e, session, resource, &o, &lease));
    plhs[0] = lease_struct(handle, resource, &lease);
  } else if (strcmp(command, "release") == 0) {
    char *resource = string_arg(nrhs, prhs, a, "resource");
    check(interlock_release(e, resource, string_arg(nrhs, prhs, a + 1, "token")));
  } else if (strcmp(command, "status") == 0) {
    char *json = NULL;
    check(interlock_resource_status(e, string_arg(nrhs, prhs, a, "resource"), &json));
    plhs[0] = mxCreateString(json);
    interlock_string_free(json);
  } else if (strcmp(command, "force_release") == 0) {
    size_t count = 0;
    char *resource = string_arg(nrhs, prhs, a, "resource");
    char *reason = opt_string_arg(nrhs, prhs, a + 1, "reason");
    check(interlock_force_release(e, resource, reason, &count));
    plhs[0] = mxCreateDoubleScalar((double)count);
  } else {
    mexErrMsgIdAndTxt("interlock:invalidArgument", "interlock_mex: unknown command '%s'",
                      command);
  }
}
