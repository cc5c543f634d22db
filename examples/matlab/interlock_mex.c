/* MEX gateway over the interlock C library, for GNU Octave and MATLAB.
 *
 *   id    = interlock_mex('open', name, metadata_json, ttl)
 *           interlock_mex('heartbeat', id)
 *   n     = interlock_mex('close', id)
 *   lease = interlock_mex('acquire', id, resource, mode, timeout, ttl)
 *           interlock_mex('release', resource, token)
 *   json  = interlock_mex('status', resource)
 *   n     = interlock_mex('force_release', resource, reason)
 *
 * Call it through the functions in +interlock/, which supply defaults. One engine per
 * Octave/MATLAB process: created by the first call, kept loaded with mexLock, freed by
 * mexAtExit when the process ends. A failure raises an error whose identifier names
 * the status (interlock:timeout, interlock:invalidToken, ...) and whose message is
 * interlock_last_error().
 *
 * Build (Octave):  mkoctfile --mex -I../../include interlock_mex.c \
 *                    <target>/release/libinterlock.a -lpthread -ldl -lm
 * Build (MATLAB):  see README.md. */
#include <math.h>
#include <string.h>

#include "interlock.h"
#include "mex.h"

static interlock_engine *engine = NULL;

static void free_engine(void) {
  interlock_engine_free(engine);
  engine = NULL;
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

static interlock_engine *the_engine(void) {
  if (engine == NULL) {
    check(interlock_engine_new(NULL, &engine));
    mexLock();
    mexAtExit(free_engine);
  }
  return engine;
}

/* Argument `i` as a string (freed with the MEX call); "" stays "", [] is NULL. */
static char *string_arg(int nrhs, const mxArray *prhs[], int i, const char *what) {
  if (i >= nrhs) usage(what);
  if (mxIsEmpty(prhs[i]) && !mxIsChar(prhs[i])) return NULL;
  if (!mxIsChar(prhs[i])) mexErrMsgIdAndTxt("interlock:invalidArgument", "%s must be text", what);
  return mxArrayToString(prhs[i]);
}

/* Argument `i` as seconds: a real scalar (Inf allowed). */
static double seconds_arg(int nrhs, const mxArray *prhs[], int i, const char *what) {
  if (i >= nrhs) usage(what);
  if (!mxIsNumeric(prhs[i]) || mxIsComplex(prhs[i]) || mxGetNumberOfElements(prhs[i]) != 1)
    mexErrMsgIdAndTxt("interlock:invalidArgument", "%s must be a real number of seconds", what);
  return mxGetScalar(prhs[i]);
}

static mxArray *lease_struct(const char *resource, const interlock_lease *l) {
  static const char *fields[] = {"resource", "token", "mode", "fence", "acquired_at",
                                 "expires_at"};
  mxArray *s = mxCreateStructMatrix(1, 1, 6, fields);
  mxSetField(s, 0, "resource", mxCreateString(resource));
  mxSetField(s, 0, "token", mxCreateString(l->token));
  mxSetField(s, 0, "mode", mxCreateString(l->mode));
  mxSetField(s, 0, "fence", mxCreateDoubleScalar((double)l->fence));
  mxSetField(s, 0, "acquired_at", mxCreateDoubleScalar(l->acquired_at));
  mxSetField(s, 0, "expires_at", mxCreateDoubleScalar(l->expires_at));
  return s;
}

void mexFunction(int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[]) {
  (void)nlhs;
  char *command = string_arg(nrhs, prhs, 0, "a command");
  if (command == NULL) usage("a command");
  interlock_engine *e = the_engine();

  if (strcmp(command, "open") == 0) {
    char id[INTERLOCK_ID_SIZE];
    char *name = string_arg(nrhs, prhs, 1, "name");
    char *metadata = string_arg(nrhs, prhs, 2, "metadata");
    check(interlock_session_open(e, name, metadata, seconds_arg(nrhs, prhs, 3, "ttl"), NULL,
                                 id));
    plhs[0] = mxCreateString(id);
  } else if (strcmp(command, "heartbeat") == 0) {
    check(interlock_session_heartbeat(e, string_arg(nrhs, prhs, 1, "session")));
  } else if (strcmp(command, "close") == 0) {
    size_t released = 0;
    check(interlock_session_close(e, string_arg(nrhs, prhs, 1, "session"), &released));
    plhs[0] = mxCreateDoubleScalar((double)released);
  } else if (strcmp(command, "acquire") == 0) {
    interlock_acquire_options o;
    check(interlock_acquire_options_init(&o));
    char *session = string_arg(nrhs, prhs, 1, "session");
    char *resource = string_arg(nrhs, prhs, 2, "resource");
    o.mode = string_arg(nrhs, prhs, 3, "mode");
    o.timeout = seconds_arg(nrhs, prhs, 4, "timeout");
    o.ttl = seconds_arg(nrhs, prhs, 5, "ttl");
    interlock_lease lease;
    check(interlock_acquire(e, session, resource, &o, &lease));
    plhs[0] = lease_struct(resource, &lease);
  } else if (strcmp(command, "release") == 0) {
    char *resource = string_arg(nrhs, prhs, 1, "resource");
    check(interlock_release(e, resource, string_arg(nrhs, prhs, 2, "token")));
  } else if (strcmp(command, "status") == 0) {
    char *json = NULL;
    check(interlock_resource_status(e, string_arg(nrhs, prhs, 1, "resource"), &json));
    plhs[0] = mxCreateString(json);
    interlock_string_free(json);
  } else if (strcmp(command, "force_release") == 0) {
    size_t count = 0;
    char *resource = string_arg(nrhs, prhs, 1, "resource");
    char *reason = nrhs > 2 ? string_arg(nrhs, prhs, 2, "reason") : NULL;
    check(interlock_force_release(e, resource, reason, &count));
    plhs[0] = mxCreateDoubleScalar((double)count);
  } else {
    mexErrMsgIdAndTxt("interlock:invalidArgument", "interlock_mex: unknown command '%s'",
                      command);
  }
}
