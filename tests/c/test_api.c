/* Every function of the C API: results, error codes, NULL and invalid-UTF-8 arguments,
 * wrong and stale tokens, lost leases, tickets, JSON queries and callbacks. */
#define _GNU_SOURCE /* syscall() */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "check.h"
#include "recorders.h"

static const char BAD_UTF8[] = "\xff\xfe";
static const char RANDOM_UUID[] = "6f1c1f8e-2a4b-4c3d-9e8f-0a1b2c3d4e5f";

/* ----- status codes and messages ------------------------------------------------ */

static void *first_error_of_thread(void *arg) {
  (void)arg;
  return (void *)(uintptr_t)(strcmp(interlock_last_error(), "") == 0);
}

static void test_status_codes_are_fixed_and_named(void) {
  CHECK(INTERLOCK_OK == 0);
  CHECK(INTERLOCK_TIMEOUT == 1);
  CHECK(INTERLOCK_INVALID_TOKEN == 2);
  CHECK(INTERLOCK_NOT_FOUND == 3);
  CHECK(INTERLOCK_SESSION_EXPIRED == 4);
  CHECK(INTERLOCK_LOCK_LOST == 5);
  CHECK(INTERLOCK_DEADLOCK == 6);
  CHECK(INTERLOCK_ALREADY_HELD == 7);
  CHECK(INTERLOCK_CLOSED == 8);
  CHECK(INTERLOCK_INVALID_ARGUMENT == 9);
  CHECK(INTERLOCK_PANIC == 10);
  CHECK(INTERLOCK_INTERNAL == 11);
  CHECK(INTERLOCK_CANCELLED == 12);
  CHECK(INTERLOCK_CONNECTION_LOST == 13);
  CHECK(INTERLOCK_PERMISSION_DENIED == 14);
  CHECK_STR(interlock_status_name(INTERLOCK_OK), "INTERLOCK_OK");
  CHECK_STR(interlock_status_name(INTERLOCK_LOCK_LOST), "INTERLOCK_LOCK_LOST");
  CHECK_STR(interlock_status_name(INTERLOCK_CANCELLED), "INTERLOCK_CANCELLED");
  CHECK_STR(interlock_status_name(INTERLOCK_PERMISSION_DENIED), "INTERLOCK_PERMISSION_DENIED");
  CHECK_STR(interlock_status_name(15), "INTERLOCK_UNKNOWN");
  CHECK_STR(interlock_status_name(999), "INTERLOCK_UNKNOWN");
}

static void test_last_error_is_per_thread(void) {
  CHECK_STATUS(interlock_engine_new(NULL, NULL), INTERLOCK_INVALID_ARGUMENT);
  CHECK(strstr(interlock_last_error(), "engine_out is NULL") != NULL);
  pthread_t t;
  void *fresh = NULL;
  pthread_create(&t, NULL, first_error_of_thread, NULL);
  pthread_join(t, &fresh);
  CHECK(fresh != NULL); /* another thread has no message yet */
  CHECK(strstr(interlock_last_error(), "engine_out is NULL") != NULL);
}

/* ----- engine ------------------------------------------------------------------- */

static void test_config_defaults_and_bad_configs(void) {
  interlock_config c;
  CHECK_OK(interlock_config_init(&c));
  CHECK(isinf(c.lock_ttl) && isinf(c.session_ttl));
  CHECK(c.history_limit == 100);
  CHECK_STR(c.on_session_expire, "release");
  CHECK_STATUS(interlock_config_init(NULL), INTERLOCK_INVALID_ARGUMENT);

  interlock_engine *e = (interlock_engine *)&c; /* a sentinel that must stay */
  interlock_config bad = c;
  bad.lock_ttl = NAN;
  CHECK_STATUS(interlock_engine_new(&bad, &e), INTERLOCK_INVALID_ARGUMENT);
  bad = c;
  bad.session_ttl = -1.0;
  CHECK_STATUS(interlock_engine_new(&bad, &e), INTERLOCK_INVALID_ARGUMENT);
  bad = c;
  bad.lock_ttl = 0.0;
  CHECK_STATUS(interlock_engine_new(&bad, &e), INTERLOCK_INVALID_ARGUMENT);
  bad = c;
  bad.on_session_expire = "forget";
  CHECK_STATUS(interlock_engine_new(&bad, &e), INTERLOCK_INVALID_ARGUMENT);
  bad.on_session_expire = BAD_UTF8;
  CHECK_STATUS(interlock_engine_new(&bad, &e), INTERLOCK_INVALID_ARGUMENT);
  bad.on_session_expire = NULL;
  CHECK_STATUS(interlock_engine_new(&bad, &e), INTERLOCK_INVALID_ARGUMENT);
  CHECK(e == (interlock_engine *)&c); /* outputs are written only on success */

  c.lock_ttl = 30.0;
  c.on_session_expire = "keep";
  CHECK_OK(interlock_engine_new(&c, &e));
  char s[INTERLOCK_ID_SIZE];
  open_session(e, "a", s);
  interlock_lease l;
  CHECK_OK(interlock_acquire(e, s, "r", NULL, &l));
  CHECK(isfinite(l.expires_at) && l.expires_at > l.acquired_at); /* the engine's lock_ttl */
  interlock_engine_free(e);
}

static void test_free_accepts_null(void) {
  interlock_engine_free(NULL);
  interlock_ticket_free(NULL);
  interlock_unsubscribe(NULL);
  interlock_string_free(NULL);
  CHECK(1);
}

static void test_null_engine_is_an_invalid_argument(void) {
  char id[INTERLOCK_ID_SIZE];
  interlock_lease l;
  bool b;
  char *json;
  CHECK_STATUS(interlock_engine_close(NULL), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_session_open(NULL, "a", NULL, INFINITY, NULL, id),
               INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_session_heartbeat(NULL, RANDOM_UUID), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_session_close(NULL, RANDOM_UUID, NULL), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_acquire(NULL, RANDOM_UUID, "r", NULL, &l), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_release(NULL, "r", RANDOM_UUID), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_renew(NULL, "r", RANDOM_UUID, INFINITY, NULL),
               INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_force_release(NULL, "r", NULL, NULL), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_check(NULL, "r", RANDOM_UUID, NULL, &b), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_check_fence(NULL, "r", 1, &b), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_resource_status(NULL, "r", &json), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_locks(NULL, &json), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_sessions(NULL, &json), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_history(NULL, NULL, NULL, 0, &json), INTERLOCK_INVALID_ARGUMENT);
  CHECK(strstr(interlock_last_error(), "engine is NULL") != NULL);
}

static void test_closed_engine_says_closed(void) {
  interlock_engine *e = new_engine();
  char s[INTERLOCK_ID_SIZE], id[INTERLOCK_ID_SIZE];
  open_session(e, "a", s);
  CHECK_OK(interlock_engine_close(e));
  CHECK_OK(interlock_engine_close(e)); /* twice is harmless */
  interlock_lease l;
  interlock_acquire_options o = with_timeout(0);
  char *json = NULL;
  CHECK_STATUS(interlock_acquire(e, s, "r", &o, &l), INTERLOCK_CLOSED);
  CHECK_STATUS(interlock_session_open(e, "b", NULL, INFINITY, NULL, id), INTERLOCK_CLOSED);
  CHECK_STATUS(interlock_locks(e, &json), INTERLOCK_CLOSED);
  CHECK(json == NULL);
  CHECK_STATUS(interlock_release(e, "r", RANDOM_UUID), INTERLOCK_CLOSED);
  interlock_engine_free(e);
}

/* ----- sessions ----------------------------------------------------------------- */

static void test_session_open_validates_its_arguments(void) {
  interlock_engine *e = new_engine();
  char id[INTERLOCK_ID_SIZE] = "unchanged";
  char long_name[300];
  memset(long_name, 'n', sizeof long_name - 1);
  long_name[sizeof long_name - 1] = '\0';
  CHECK_STATUS(interlock_session_open(e, NULL, NULL, INFINITY, NULL, id),
               INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_session_open(e, "", NULL, INFINITY, NULL, id),
               INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_session_open(e, long_name, NULL, INFINITY, NULL, id),
               INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_session_open(e, BAD_UTF8, NULL, INFINITY, NULL, id),
               INTERLOCK_INVALID_ARGUMENT);
  CHECK(strstr(interlock_last_error(), "UTF-8") != NULL);
  CHECK_STATUS(interlock_session_open(e, "a", "{", INFINITY, NULL, id),
               INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_session_open(e, "a", "[1, 2]", INFINITY, NULL, id),
               INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_session_open(e, "a", BAD_UTF8, INFINITY, NULL, id),
               INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_session_open(e, "a", NULL, NAN, NULL, id), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_session_open(e, "a", NULL, -2.0, NULL, id),
               INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_session_open(e, "a", NULL, 0.0, NULL, id), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_session_open(e, "a", NULL, INFINITY, "never", id),
               INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_session_open(e, "a", NULL, INFINITY, NULL, NULL),
               INTERLOCK_INVALID_ARGUMENT);
  CHECK_STR(id, "unchanged");
  char *json = NULL;
  CHECK_OK(interlock_sessions(e, &json));
  CHECK_STR(json, "[]"); /* nothing was opened by the failed calls */
  interlock_string_free(json);
  interlock_engine_free(e);
}

static void test_session_open_heartbeat_close(void) {
  interlock_engine *e = new_engine();
  char s[INTERLOCK_ID_SIZE];
  CHECK_OK(interlock_session_open(e, "ReactorController", "{\"user\": \"ana\"}", 60.0,
                                  "release", s));
  CHECK(strlen(s) == 36);
  CHECK_OK(interlock_session_heartbeat(e, s));
  CHECK_STATUS(interlock_session_heartbeat(e, RANDOM_UUID), INTERLOCK_NOT_FOUND);
  CHECK_STATUS(interlock_session_heartbeat(e, "not-an-id"), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_session_heartbeat(e, NULL), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_session_heartbeat(e, BAD_UTF8), INTERLOCK_INVALID_ARGUMENT);

  char *json = NULL;
  CHECK_OK(interlock_sessions(e, &json));
  CHECK(strstr(json, "\"name\":\"ReactorController\"") != NULL);
  CHECK(strstr(json, "\"metadata\":{\"user\":\"ana\"}") != NULL);
  CHECK(strstr(json, s) != NULL);
  interlock_string_free(json);

  interlock_lease a, b;
  CHECK_OK(interlock_acquire(e, s, "a", NULL, &a));
  CHECK_OK(interlock_acquire(e, s, "b", NULL, &b));
  size_t released = 99;
  CHECK_OK(interlock_session_close(e, s, &released));
  CHECK(released == 2);
  /* Released normally, not lost: the tokens are simply no longer current. */
  CHECK_STATUS(interlock_release(e, "a", a.token), INTERLOCK_INVALID_TOKEN);
  /* Closing a closed session is harmless and releases nothing. */
  CHECK_OK(interlock_session_close(e, s, &released));
  CHECK(released == 0);
  CHECK_STATUS(interlock_session_heartbeat(e, s), INTERLOCK_NOT_FOUND);
  CHECK_STATUS(interlock_acquire(e, s, "a", NULL, &a), INTERLOCK_NOT_FOUND);
  CHECK_OK(interlock_sessions(e, &json));
  CHECK_STR(json, "[]");
  interlock_string_free(json);
  interlock_engine_free(e);
}

static void test_session_ttl_expires_and_loses_its_leases(void) {
  interlock_engine *e = new_engine();
  char s[INTERLOCK_ID_SIZE], other[INTERLOCK_ID_SIZE];
  /* Long enough that a loaded machine (valgrind, parallel builds) still acquires first. */
  CHECK_OK(interlock_session_open(e, "short", NULL, 0.5, NULL, s));
  open_session(e, "other", other);
  interlock_lease l;
  CHECK_OK(interlock_acquire(e, s, "r", NULL, &l));
  bool held = true;
  CHECK(EVENTUALLY(interlock_check_fence(e, "r", l.fence, &held) == INTERLOCK_OK && !held));
  CHECK_STATUS(interlock_session_heartbeat(e, s), INTERLOCK_SESSION_EXPIRED);
  CHECK_STATUS(interlock_release(e, "r", l.token), INTERLOCK_LOCK_LOST);
  CHECK(strstr(interlock_last_error(), "session_expired") != NULL);
  interlock_acquire_options o = with_timeout(0);
  CHECK_STATUS(interlock_acquire(e, s, "r2", &o, &l), INTERLOCK_SESSION_EXPIRED);
  CHECK_OK(interlock_acquire(e, other, "r", &o, &l));
  interlock_engine_free(e);
}

/* ----- acquire, release, check ---------------------------------------------------- */

static void test_acquire_release_and_checks(void) {
  interlock_engine *e = new_engine();
  char a[INTERLOCK_ID_SIZE], b[INTERLOCK_ID_SIZE];
  open_session(e, "a", a);
  open_session(e, "b", b);
  interlock_lease l;
  CHECK_OK(interlock_acquire(e, a, "reactor-1", NULL, &l));
  CHECK(strlen(l.token) == 36);
  CHECK_STR(l.mode, "exclusive");
  CHECK(l.fence > 0);
  CHECK(l.priority == 100);
  CHECK(isinf(l.expires_at));
  CHECK(l.acquired_at > 1.5e9); /* unix seconds */

  bool yes = false;
  CHECK_OK(interlock_check(e, "reactor-1", a, "control", &yes));
  CHECK(yes);
  CHECK_OK(interlock_check(e, "reactor-1", a, NULL, &yes));
  CHECK(yes);
  CHECK_OK(interlock_check(e, "reactor-1", b, "observe", &yes));
  CHECK(!yes);
  CHECK_OK(interlock_check(e, "reactor-1", RANDOM_UUID, "observe", &yes));
  CHECK(!yes);
  CHECK_STATUS(interlock_check(e, "reactor-1", a, "drive", &yes), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_check(e, "reactor-1", a, BAD_UTF8, &yes), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_check(e, "reactor-1", "x", NULL, &yes), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_check(e, "reactor-1", a, NULL, NULL), INTERLOCK_INVALID_ARGUMENT);
  CHECK_OK(interlock_check_fence(e, "reactor-1", l.fence, &yes));
  CHECK(yes);
  CHECK_OK(interlock_check_fence(e, "reactor-1", l.fence + 1, &yes));
  CHECK(!yes);
  CHECK_STATUS(interlock_check_fence(e, "", l.fence, &yes), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_check_fence(e, "reactor-1", l.fence, NULL),
               INTERLOCK_INVALID_ARGUMENT);

  interlock_acquire_options o = with_timeout(0);
  interlock_lease other;
  CHECK_STATUS(interlock_acquire(e, b, "reactor-1", &o, &other), INTERLOCK_TIMEOUT);
  o.timeout = 0.05;
  CHECK_STATUS(interlock_acquire(e, b, "reactor-1", &o, &other), INTERLOCK_TIMEOUT);
  CHECK(waiters_of(e, "reactor-1") == 0); /* a timed-out acquire leaves nothing queued */
  CHECK_STATUS(interlock_acquire(e, a, "reactor-1", &o, &other), INTERLOCK_ALREADY_HELD);

  CHECK_OK(interlock_release(e, "reactor-1", l.token));
  CHECK_OK(interlock_check_fence(e, "reactor-1", l.fence, &yes));
  CHECK(!yes);
  CHECK_OK(interlock_acquire(e, b, "reactor-1", &o, &other));
  CHECK(other.fence > l.fence);
  interlock_engine_free(e);
}

static void test_acquire_validates_its_arguments(void) {
  interlock_engine *e = new_engine();
  char a[INTERLOCK_ID_SIZE];
  open_session(e, "a", a);
  interlock_lease l;
  memset(&l, 0x5a, sizeof l);
  interlock_acquire_options o = with_timeout(0), bad;
  char long_name[1100];
  memset(long_name, 'r', sizeof long_name - 1);
  long_name[sizeof long_name - 1] = '\0';

  CHECK_STATUS(interlock_acquire(e, NULL, "r", &o, &l), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_acquire(e, BAD_UTF8, "r", &o, &l), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_acquire(e, "nope", "r", &o, &l), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_acquire(e, RANDOM_UUID, "r", &o, &l), INTERLOCK_NOT_FOUND);
  CHECK_STATUS(interlock_acquire(e, a, NULL, &o, &l), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_acquire(e, a, "", &o, &l), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_acquire(e, a, long_name, &o, &l), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_acquire(e, a, BAD_UTF8, &o, &l), INTERLOCK_INVALID_ARGUMENT);
  bad = o;
  bad.mode = "driver";
  CHECK_STATUS(interlock_acquire(e, a, "r", &bad, &l), INTERLOCK_INVALID_ARGUMENT);
  bad.mode = BAD_UTF8;
  CHECK_STATUS(interlock_acquire(e, a, "r", &bad, &l), INTERLOCK_INVALID_ARGUMENT);
  bad = o;
  bad.timeout = NAN;
  CHECK_STATUS(interlock_acquire(e, a, "r", &bad, &l), INTERLOCK_INVALID_ARGUMENT);
  bad.timeout = -1;
  CHECK_STATUS(interlock_acquire(e, a, "r", &bad, &l), INTERLOCK_INVALID_ARGUMENT);
  bad = o;
  bad.ttl = 0;
  CHECK_STATUS(interlock_acquire(e, a, "r", &bad, &l), INTERLOCK_INVALID_ARGUMENT);
  bad.ttl = NAN;
  CHECK_STATUS(interlock_acquire(e, a, "r", &bad, &l), INTERLOCK_INVALID_ARGUMENT);
  bad = o;
  bad.priority = 256;
  CHECK_STATUS(interlock_acquire(e, a, "r", &bad, &l), INTERLOCK_INVALID_ARGUMENT);
  bad = o;
  bad.reason = BAD_UTF8;
  CHECK_STATUS(interlock_acquire(e, a, "r", &bad, &l), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_acquire(e, a, "r", &o, NULL), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_acquire_options_init(NULL), INTERLOCK_INVALID_ARGUMENT);
  CHECK(l.fence == 0x5a5a5a5a5a5a5a5aULL); /* untouched by the failures */
  char *json = NULL;
  CHECK_OK(interlock_locks(e, &json));
  CHECK_STR(json, "[]"); /* and none of them took a lock */
  interlock_string_free(json);
  interlock_engine_free(e);
}

static void test_shared_and_observer_modes(void) {
  interlock_engine *e = new_engine();
  char a[INTERLOCK_ID_SIZE], b[INTERLOCK_ID_SIZE], c[INTERLOCK_ID_SIZE];
  open_session(e, "a", a);
  open_session(e, "b", b);
  open_session(e, "c", c);
  interlock_acquire_options o = with_timeout(0);
  o.mode = "shared";
  interlock_lease la, lb, lc;
  CHECK_OK(interlock_acquire(e, a, "scope", &o, &la));
  o.mode = "observer";
  CHECK_OK(interlock_acquire(e, b, "scope", &o, &lb));
  CHECK_STR(lb.mode, "shared");
  bool yes = true;
  CHECK_OK(interlock_check(e, "scope", b, "control", &yes));
  CHECK(!yes);
  CHECK_OK(interlock_check(e, "scope", b, "observe", &yes));
  CHECK(yes);
  o.mode = NULL; /* exclusive */
  CHECK_STATUS(interlock_acquire(e, c, "scope", &o, &lc), INTERLOCK_TIMEOUT);
  CHECK(status_has(e, "scope", "\"mode\":\"shared\""));
  char *json = status_json(e, "scope");
  CHECK(json != NULL && count_of(json, "\"fence\"") == 2);
  interlock_string_free(json);
  interlock_engine_free(e);
}

static void test_wrong_and_stale_tokens(void) {
  interlock_engine *e = new_engine();
  char a[INTERLOCK_ID_SIZE];
  open_session(e, "a", a);
  interlock_lease l, m;
  CHECK_OK(interlock_acquire(e, a, "r", NULL, &l));
  CHECK_OK(interlock_acquire(e, a, "q", NULL, &m));
  CHECK_STATUS(interlock_release(e, "r", RANDOM_UUID), INTERLOCK_INVALID_TOKEN);
  CHECK_STATUS(interlock_release(e, "r", m.token), INTERLOCK_INVALID_TOKEN); /* q's token */
  CHECK_STATUS(interlock_release(e, "nowhere", l.token), INTERLOCK_INVALID_TOKEN);
  /* A malformed token is not current either (as in Python). */
  CHECK_STATUS(interlock_release(e, "r", "garbage"), INTERLOCK_INVALID_TOKEN);
  CHECK_STATUS(interlock_release(e, "r", BAD_UTF8), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_release(e, "r", NULL), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_release(e, NULL, l.token), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_release(e, BAD_UTF8, l.token), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_renew(e, "r", RANDOM_UUID, INFINITY, NULL), INTERLOCK_INVALID_TOKEN);
  CHECK_STATUS(interlock_renew(e, "r", m.token, INFINITY, NULL), INTERLOCK_INVALID_TOKEN);
  bool held = false;
  CHECK_OK(interlock_check_fence(e, "r", l.fence, &held));
  CHECK(held); /* the wrong tokens changed nothing */
  CHECK_OK(interlock_release(e, "r", l.token));
  CHECK_STATUS(interlock_release(e, "r", l.token), INTERLOCK_INVALID_TOKEN); /* stale */
  CHECK_STATUS(interlock_renew(e, "r", l.token, 5.0, NULL), INTERLOCK_INVALID_TOKEN);
  interlock_engine_free(e);
}

/* Bad input gets the same answer as from the Python package: a lost lease LOCK_LOST
 * (LockLost), a malformed token INVALID_TOKEN (InvalidToken: it is not current either), a
 * malformed session id INVALID_ARGUMENT (ValueError). Nothing changes and no out-pointer
 * is written. A well-formed id of no session is another matter: NOT_FOUND. */
static void test_bad_input_agrees_with_python(void) {
  interlock_engine *e = new_engine();
  char a[INTERLOCK_ID_SIZE];
  open_session(e, "a", a);

  /* A lease that expired: release and renew say it was lost, as often as asked. */
  interlock_acquire_options o = with_timeout(0);
  o.ttl = 0.05;
  interlock_lease lost;
  CHECK_OK(interlock_acquire(e, a, "lost", &o, &lost));
  bool held = true;
  CHECK(EVENTUALLY(interlock_check_fence(e, "lost", lost.fence, &held) == INTERLOCK_OK && !held));
  CHECK_STATUS(interlock_release(e, "lost", lost.token), INTERLOCK_LOCK_LOST);
  CHECK(strstr(interlock_last_error(), "expired") != NULL);
  CHECK_STATUS(interlock_renew(e, "lost", lost.token, 5.0, NULL), INTERLOCK_LOCK_LOST);
  CHECK_STATUS(interlock_release(e, "lost", lost.token), INTERLOCK_LOCK_LOST);

  /* Malformed tokens, for release and for renew. */
  interlock_lease l;
  CHECK_OK(interlock_acquire(e, a, "r", NULL, &l));
  char too_long[INTERLOCK_ID_SIZE + 1];
  snprintf(too_long, sizeof too_long, "%sf", l.token);
  char too_short[INTERLOCK_ID_SIZE];
  snprintf(too_short, sizeof too_short, "%.35s", l.token);
  const char *bad_tokens[] = {"garbage", "", too_long, too_short, "{}"};
  double expires = 42.0;
  for (size_t i = 0; i < sizeof bad_tokens / sizeof bad_tokens[0]; i++) {
    CHECK_STATUS(interlock_release(e, "r", bad_tokens[i]), INTERLOCK_INVALID_TOKEN);
    CHECK_STATUS(interlock_renew(e, "r", bad_tokens[i], 5.0, &expires), INTERLOCK_INVALID_TOKEN);
    CHECK_STATUS(interlock_renew(e, "r", bad_tokens[i], INFINITY, NULL), INTERLOCK_INVALID_TOKEN);
  }
  CHECK(expires == 42.0);
  CHECK_OK(interlock_check_fence(e, "r", l.fence, &held));
  CHECK(held); /* none of them released it */

  /* Malformed session ids, for every function that takes one. */
  char a_and_more[INTERLOCK_ID_SIZE + 1];
  snprintf(a_and_more, sizeof a_and_more, "%s0", a);
  const char *bad_ids[] = {"nope", "", a_and_more, "6f1c1f8e-2a4b-4c3d-9e8f"};
  const char *names[] = {"s"};
  for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
    const char *id = bad_ids[i];
    interlock_lease got;
    memset(&got, 0x5a, sizeof got);
    bool yes = true;
    char *json = (char *)"untouched";
    size_t released = 99;
    interlock_ticket *t = NULL;
    CHECK_STATUS(interlock_acquire(e, id, "s", &o, &got), INTERLOCK_INVALID_ARGUMENT);
    CHECK(strstr(interlock_last_error(), "not a session id") != NULL);
    CHECK_STATUS(interlock_acquire_many(e, id, names, 1, &o, &got), INTERLOCK_INVALID_ARGUMENT);
    CHECK_STATUS(interlock_enqueue(e, id, "s", &o, &t, NULL), INTERLOCK_INVALID_ARGUMENT);
    CHECK_STATUS(interlock_session_heartbeat(e, id), INTERLOCK_INVALID_ARGUMENT);
    CHECK_STATUS(interlock_check(e, "r", id, NULL, &yes), INTERLOCK_INVALID_ARGUMENT);
    CHECK_STATUS(interlock_check(e, "r", id, "observe", &yes), INTERLOCK_INVALID_ARGUMENT);
    CHECK_STATUS(interlock_history(e, NULL, id, 0, &json), INTERLOCK_INVALID_ARGUMENT);
    CHECK_STATUS(interlock_history(e, "r", id, 0, &json), INTERLOCK_INVALID_ARGUMENT);
    CHECK_STATUS(interlock_session_close(e, id, &released), INTERLOCK_INVALID_ARGUMENT);
    CHECK(got.fence == 0x5a5a5a5a5a5a5a5aULL && yes && t == NULL && released == 99);
    CHECK_STR(json, "untouched");
  }

  /* Well-formed, but no session has that id. */
  interlock_lease got;
  size_t released = 99;
  bool yes = true;
  CHECK_STATUS(interlock_acquire(e, RANDOM_UUID, "s", &o, &got), INTERLOCK_NOT_FOUND);
  CHECK_STATUS(interlock_session_heartbeat(e, RANDOM_UUID), INTERLOCK_NOT_FOUND);
  CHECK_STATUS(interlock_session_close(e, RANDOM_UUID, &released), INTERLOCK_NOT_FOUND);
  CHECK(released == 99);
  CHECK_OK(interlock_check(e, "r", RANDOM_UUID, NULL, &yes));
  CHECK(!yes);
  char *json = NULL;
  CHECK_OK(interlock_history(e, NULL, RANDOM_UUID, 0, &json));
  CHECK_STR(json, "[]");
  interlock_string_free(json);

  /* The session is as it was: open, holding "r" only. */
  CHECK_OK(interlock_session_heartbeat(e, a));
  CHECK_OK(interlock_locks(e, &json));
  CHECK(json != NULL && count_of(json, "\"resource\":") == 1 && strstr(json, "\"r\"") != NULL);
  interlock_string_free(json);
  CHECK_OK(interlock_release(e, "r", l.token));
  interlock_engine_free(e);
}

static void test_renew_extends_a_lease(void) {
  interlock_engine *e = new_engine();
  char a[INTERLOCK_ID_SIZE];
  open_session(e, "a", a);
  interlock_acquire_options o = with_timeout(0);
  o.ttl = 30.0;
  interlock_lease l;
  CHECK_OK(interlock_acquire(e, a, "r", &o, &l));
  CHECK(l.expires_at > l.acquired_at + 29.0 && l.expires_at < l.acquired_at + 31.0);
  double expires = 0;
  CHECK_OK(interlock_renew(e, "r", l.token, 600.0, &expires));
  CHECK(expires > l.acquired_at + 599.0);
  CHECK_OK(interlock_renew(e, "r", l.token, INFINITY, &expires)); /* its own TTL: 600 */
  CHECK(expires > l.acquired_at + 599.0);
  CHECK_OK(interlock_renew(e, "r", l.token, 10.0, NULL));
  CHECK_STATUS(interlock_renew(e, "r", l.token, NAN, &expires), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_renew(e, "r", l.token, 0, &expires), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_renew(e, "", l.token, 1, &expires), INTERLOCK_INVALID_ARGUMENT);
  CHECK(expires > l.acquired_at + 599.0); /* untouched by the failures */
  CHECK(status_has(e, "r", "\"remaining\":"));

  interlock_lease forever;
  CHECK_OK(interlock_acquire(e, a, "s", NULL, &forever));
  CHECK_OK(interlock_renew(e, "s", forever.token, INFINITY, &expires));
  CHECK(isinf(expires));
  interlock_engine_free(e);
}

/* ----- lost leases and the lost callback ---------------------------------------- */

static void test_preemption_loses_the_lower_priority_lease(void) {
  interlock_engine *e = new_engine();
  char plan[INTERLOCK_ID_SIZE], maint[INTERLOCK_ID_SIZE];
  open_session(e, "queued plan", plan);
  open_session(e, "maintenance", maint);
  lost_log log = LOST_LOG_INIT;
  interlock_acquire_options o = with_timeout(0);
  o.priority = 3;
  o.on_lost = on_lost;
  o.on_lost_user_data = &log;
  interlock_lease low, high;
  CHECK_OK(interlock_acquire(e, plan, "motor", &o, &low));
  interlock_acquire_options p = with_timeout(0);
  p.priority = 0;
  p.preempt = true;
  p.reason = "calibration";
  CHECK_OK(interlock_acquire(e, maint, "motor", &p, &high));
  CHECK(high.priority == 0);
  CHECK(EVENTUALLY(lost_calls(&log) == 1));
  CHECK_STR(log.reason, "preempted");
  CHECK_STR(log.session_id, plan);
  CHECK(log.fence == low.fence);
  CHECK_STATUS(interlock_release(e, "motor", low.token), INTERLOCK_LOCK_LOST);
  CHECK(strstr(interlock_last_error(), "preempted") != NULL);
  /* An equal priority does not preempt. */
  interlock_lease again;
  p.priority = 0;
  CHECK_STATUS(interlock_acquire(e, plan, "motor", &p, &again), INTERLOCK_TIMEOUT);
  CHECK_OK(interlock_release(e, "motor", high.token));
  CHECK(lost_calls(&log) == 1); /* a normal release is not a loss */
  interlock_engine_free(e);
}

static void test_lease_ttl_expiry_loses_the_lease(void) {
  interlock_engine *e = new_engine();
  char a[INTERLOCK_ID_SIZE];
  open_session(e, "a", a);
  lost_log log = LOST_LOG_INIT;
  interlock_acquire_options o = with_timeout(0);
  o.ttl = 0.05;
  o.on_lost = on_lost;
  o.on_lost_user_data = &log;
  interlock_lease l;
  CHECK_OK(interlock_acquire(e, a, "r", &o, &l));
  CHECK(EVENTUALLY(lost_calls(&log) == 1));
  CHECK_STR(log.reason, "expired");
  CHECK_STATUS(interlock_renew(e, "r", l.token, 10.0, NULL), INTERLOCK_LOCK_LOST);
  CHECK(strstr(interlock_last_error(), "expired") != NULL);
  interlock_engine_free(e);
}

static void test_break_stale_takes_over_a_stale_holder(void) {
  interlock_engine *e = new_engine();
  char crashed[INTERLOCK_ID_SIZE], taker[INTERLOCK_ID_SIZE];
  CHECK_OK(interlock_session_open(e, "packer", NULL, 0.05, "keep", crashed));
  open_session(e, "taker", taker);
  interlock_lease old, taken;
  CHECK_OK(interlock_acquire(e, crashed, "folder", NULL, &old));
  CHECK(EVENTUALLY(status_has(e, "folder", "\"stale\":true")));
  interlock_acquire_options o = with_timeout(0);
  CHECK_STATUS(interlock_acquire(e, taker, "folder", &o, &taken), INTERLOCK_TIMEOUT);
  o.break_stale = true;
  CHECK_OK(interlock_acquire(e, taker, "folder", &o, &taken));
  CHECK_STATUS(interlock_release(e, "folder", old.token), INTERLOCK_LOCK_LOST);
  CHECK_OK(interlock_release(e, "folder", taken.token));
  interlock_engine_free(e);
}

/* ----- multi-acquire, tickets, deadlock ------------------------------------------- */

static void test_acquire_many_is_all_or_nothing(void) {
  interlock_engine *e = new_engine();
  char a[INTERLOCK_ID_SIZE], b[INTERLOCK_ID_SIZE];
  open_session(e, "a", a);
  open_session(e, "b", b);
  const char *motors[] = {"motor1", "motor2"};
  interlock_lease ls[2];
  CHECK_OK(interlock_acquire_many(e, a, motors, 2, NULL, ls));
  bool yes = false;
  CHECK_OK(interlock_check_fence(e, "motor1", ls[0].fence, &yes));
  CHECK(yes);
  CHECK_OK(interlock_check_fence(e, "motor2", ls[1].fence, &yes));
  CHECK(yes);
  CHECK(strcmp(ls[0].token, ls[1].token) != 0);
  CHECK_OK(interlock_release(e, "motor1", ls[0].token));

  const char *both[] = {"motor1", "motor2"};
  interlock_acquire_options o = with_timeout(0);
  interlock_lease mine[2];
  CHECK_STATUS(interlock_acquire_many(e, b, both, 2, &o, mine), INTERLOCK_TIMEOUT);
  CHECK_OK(interlock_check(e, "motor1", b, "observe", &yes));
  CHECK(!yes); /* it took neither */

  const char *twice[] = {"x", "x"};
  const char *with_null[] = {"x", NULL};
  const char *with_bad[] = {"x", BAD_UTF8};
  CHECK_STATUS(interlock_acquire_many(e, b, twice, 2, &o, mine), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_acquire_many(e, b, with_null, 2, &o, mine), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_acquire_many(e, b, with_bad, 2, &o, mine), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_acquire_many(e, b, both, 0, &o, mine), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_acquire_many(e, b, NULL, 2, &o, mine), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_acquire_many(e, b, both, 2, &o, NULL), INTERLOCK_INVALID_ARGUMENT);

  CHECK_OK(interlock_release(e, "motor2", ls[1].token));
  CHECK_OK(interlock_acquire_many(e, b, both, 2, &o, mine));
  interlock_engine_free(e);
}

static void test_tickets_queue_wait_and_cancel(void) {
  interlock_engine *e = new_engine();
  char a[INTERLOCK_ID_SIZE], b[INTERLOCK_ID_SIZE], c[INTERLOCK_ID_SIZE];
  open_session(e, "a", a);
  open_session(e, "b", b);
  open_session(e, "c", c);
  interlock_lease held, got;
  CHECK_OK(interlock_acquire(e, a, "scope", NULL, &held));

  interlock_ticket *tb = NULL, *tc = NULL;
  uint64_t pos = 99;
  CHECK_OK(interlock_enqueue(e, b, "scope", NULL, &tb, &pos));
  CHECK(pos == 1);
  CHECK_OK(interlock_enqueue(e, c, "scope", NULL, &tc, NULL));
  CHECK_OK(interlock_ticket_position(tc, &pos));
  CHECK(pos == 2);
  CHECK_STATUS(interlock_ticket_wait(tb, 0.05, &got), INTERLOCK_TIMEOUT);
  CHECK_OK(interlock_ticket_position(tb, &pos));
  CHECK(pos == 1); /* still queued after a timed-out wait */

  CHECK_OK(interlock_release(e, "scope", held.token));
  CHECK_OK(interlock_ticket_wait(tb, INFINITY, &got));
  bool yes = false;
  CHECK_OK(interlock_check(e, "scope", b, "control", &yes));
  CHECK(yes);
  CHECK_OK(interlock_ticket_position(tb, &pos));
  CHECK(pos == 0);
  CHECK_STATUS(interlock_ticket_wait(tb, 0, &got), INTERLOCK_NOT_FOUND);
  CHECK_OK(interlock_ticket_position(tc, &pos));
  CHECK(pos == 1);

  CHECK_OK(interlock_ticket_cancel(tc));
  CHECK_OK(interlock_ticket_cancel(tc)); /* twice does nothing */
  CHECK_STATUS(interlock_ticket_wait(tc, 0, &got), INTERLOCK_CANCELLED);
  CHECK_OK(interlock_ticket_position(tc, &pos));
  CHECK(pos == 0);
  CHECK(waiters_of(e, "scope") == 0);
  CHECK_OK(interlock_release(e, "scope", got.token));
  interlock_ticket_free(tb);
  interlock_ticket_free(tc);

  /* Granted at once: position 0, and the wait returns the lease. */
  interlock_ticket *t = NULL;
  CHECK_OK(interlock_enqueue(e, a, "free", NULL, &t, &pos));
  CHECK(pos == 0);
  CHECK_OK(interlock_ticket_wait(t, 0, &got));
  CHECK_OK(interlock_release(e, "free", got.token));
  interlock_ticket_free(t);

  /* Freeing a pending ticket withdraws the request. */
  CHECK_OK(interlock_acquire(e, a, "scope", NULL, &held));
  CHECK_OK(interlock_enqueue(e, b, "scope", NULL, &t, &pos));
  CHECK(waiters_of(e, "scope") == 1);
  interlock_ticket_free(t);
  CHECK(EVENTUALLY(waiters_of(e, "scope") == 0));

  /* Errors known at once come at once; the out-pointers stay untouched. */
  interlock_acquire_options o = with_timeout(0);
  t = (interlock_ticket *)&pos;
  CHECK_STATUS(interlock_enqueue(e, b, "scope", &o, &t, &pos), INTERLOCK_TIMEOUT);
  CHECK_STATUS(interlock_enqueue(e, a, "scope", NULL, &t, &pos), INTERLOCK_ALREADY_HELD);
  CHECK_STATUS(interlock_enqueue(e, a, "", NULL, &t, &pos), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_enqueue(e, a, "x", NULL, NULL, &pos), INTERLOCK_INVALID_ARGUMENT);
  CHECK(t == (interlock_ticket *)&pos);
  CHECK_STATUS(interlock_ticket_wait(NULL, 0, &got), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_ticket_position(NULL, &pos), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_ticket_cancel(NULL), INTERLOCK_INVALID_ARGUMENT);
  interlock_engine_free(e);
}

/* Whether thread `tid` of this process sleeps in the futex system call: how a thread
 * blocked in interlock (on a condition variable, a parked thread) looks from outside, as
 * opposed to one that is running or about to make the call. Linux: /proc/self/task/TID/
 * syscall gives the number of the system call a blocked thread is in ("running" if it is
 * not blocked); wchan, the kernel function it sleeps in, if that file cannot be read.
 * (Under valgrind a thread waiting for its turn to run sleeps in read(), not futex.) */
static int sleeps_on_futex(long tid) {
  char path[64], text[64] = "";
  snprintf(path, sizeof path, "/proc/self/task/%ld/syscall", tid);
  FILE *f = fopen(path, "r");
  if (f != NULL) {
    long nr = -1;
    int got = fscanf(f, "%ld", &nr);
    fclose(f);
    return got == 1 && nr == SYS_futex;
  }
  snprintf(path, sizeof path, "/proc/self/task/%ld/wchan", tid);
  f = fopen(path, "r");
  if (f == NULL) return 0;
  size_t n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[n] = '\0';
  return strstr(text, "futex") != NULL;
}

typedef struct {
  const interlock_ticket *ticket;
  atomic_long tid; /* the waiting thread's, once it runs */
  atomic_int returned;
  interlock_status status;
} ticket_waiter;

static void *wait_ticket(void *arg) {
  ticket_waiter *w = arg;
  atomic_store(&w->tid, syscall(SYS_gettid));
  interlock_lease l;
  w->status = interlock_ticket_wait(w->ticket, INFINITY, &l);
  atomic_store(&w->returned, 1);
  return NULL;
}

static int blocked_in_wait(ticket_waiter *w) {
  long tid = atomic_load(&w->tid);
  return tid != 0 && !atomic_load(&w->returned) && sleeps_on_futex(tid);
}

static void test_cancel_wakes_a_waiting_thread(void) {
  interlock_engine *e = new_engine();
  char a[INTERLOCK_ID_SIZE], b[INTERLOCK_ID_SIZE];
  open_session(e, "a", a);
  open_session(e, "b", b);
  interlock_lease held;
  CHECK_OK(interlock_acquire(e, a, "r", NULL, &held));
  interlock_ticket *t = NULL;
  CHECK_OK(interlock_enqueue(e, b, "r", NULL, &t, NULL));
  ticket_waiter w = {.ticket = t, .status = INTERLOCK_OK};
  atomic_init(&w.tid, 0);
  atomic_init(&w.returned, 0);
  pthread_t th;
  pthread_create(&th, NULL, wait_ticket, &w);
  /* The waiter is asleep inside interlock_ticket_wait (it announced itself, has not
   * returned, and sleeps on a futex), and its request still waits in the queue: the
   * cancel below is what wakes it, not a cancel it found already done. */
  CHECK(EVENTUALLY(blocked_in_wait(&w)));
  uint64_t pos = 0;
  CHECK_OK(interlock_ticket_position(t, &pos));
  CHECK(pos == 1);
  CHECK(waiters_of(e, "r") == 1);
  CHECK(!atomic_load(&w.returned));
  CHECK_OK(interlock_ticket_cancel(t));
  pthread_join(th, NULL);
  CHECK_STATUS(w.status, INTERLOCK_CANCELLED);
  CHECK(waiters_of(e, "r") == 0);
  interlock_ticket_free(t);
  interlock_engine_free(e);
}

typedef struct {
  interlock_engine *engine;
  const char *session;
  atomic_int returned;
  interlock_status status;
  interlock_lease lease;
} blocking_acquirer;

static void *acquire_and_wait(void *arg) {
  blocking_acquirer *b = arg;
  b->status = interlock_acquire(b->engine, b->session, "r", NULL, &b->lease);
  atomic_store(&b->returned, 1);
  return NULL;
}

static void test_a_blocked_acquire_is_granted_on_release(void) {
  interlock_engine *e = new_engine();
  char a[INTERLOCK_ID_SIZE], b[INTERLOCK_ID_SIZE];
  open_session(e, "a", a);
  open_session(e, "waiter", b);
  interlock_lease held;
  CHECK_OK(interlock_acquire(e, a, "r", NULL, &held));
  blocking_acquirer w = {.engine = e, .session = b, .status = INTERLOCK_INTERNAL};
  atomic_init(&w.returned, 0);
  pthread_t th;
  pthread_create(&th, NULL, acquire_and_wait, &w);
  /* Only a call in progress puts b in the queue (interlock_acquire queues, then waits),
   * and it cannot return while a holds "r": b's thread is blocked in interlock_acquire
   * before the release below. */
  CHECK(EVENTUALLY(waiters_of(e, "r") == 1));
  char *json = status_json(e, "r");
  CHECK(json != NULL && strstr(json, "\"waiters\":[{\"session_id\"") != NULL);
  CHECK(json != NULL && strstr(strstr(json, "\"waiters\""), b) != NULL);
  interlock_string_free(json);
  CHECK(!atomic_load(&w.returned));
  CHECK_OK(interlock_release(e, "r", held.token));
  pthread_join(th, NULL);
  CHECK_OK(w.status);
  CHECK(w.lease.fence > held.fence);
  bool yes = false;
  CHECK_OK(interlock_check(e, "r", b, "control", &yes));
  CHECK(yes);
  CHECK(waiters_of(e, "r") == 0);
  CHECK_OK(interlock_release(e, "r", w.lease.token));
  interlock_engine_free(e);
}

static void test_deadlock_is_reported(void) {
  interlock_engine *e = new_engine();
  char a[INTERLOCK_ID_SIZE], b[INTERLOCK_ID_SIZE];
  open_session(e, "a", a);
  open_session(e, "b", b);
  interlock_lease la, lb, l;
  CHECK_OK(interlock_acquire(e, a, "A", NULL, &la));
  CHECK_OK(interlock_acquire(e, b, "B", NULL, &lb));
  interlock_ticket *t = NULL;
  CHECK_OK(interlock_enqueue(e, a, "B", NULL, &t, NULL)); /* a waits for b */
  CHECK_STATUS(interlock_acquire(e, b, "A", NULL, &l), INTERLOCK_DEADLOCK);
  CHECK_OK(interlock_release(e, "B", lb.token));
  CHECK_OK(interlock_ticket_wait(t, INFINITY, &l));
  interlock_ticket_free(t);
  interlock_engine_free(e);
}

/* ----- JSON queries ------------------------------------------------------------- */

static void test_json_queries_never_show_a_token(void) {
  interlock_engine *e = new_engine();
  char a[INTERLOCK_ID_SIZE], b[INTERLOCK_ID_SIZE];
  CHECK_OK(interlock_session_open(e, "Optimizer", "{\"host\": \"lab-pc\"}", INFINITY, NULL, a));
  open_session(e, "UI", b);
  interlock_acquire_options o = with_timeout(INFINITY);
  o.reason = "scan 42";
  interlock_lease l;
  CHECK_OK(interlock_acquire(e, a, "reactor-1", &o, &l));
  interlock_ticket *t = NULL;
  CHECK_OK(interlock_enqueue(e, b, "reactor-1", NULL, &t, NULL));

  char *json = NULL;
  CHECK_OK(interlock_resource_status(e, "reactor-1", &json));
  CHECK(strstr(json, "\"resource\":\"reactor-1\"") != NULL);
  CHECK(strstr(json, "\"locked\":true") != NULL);
  CHECK(strstr(json, "\"session_name\":\"Optimizer\"") != NULL);
  CHECK(strstr(json, "\"metadata\":{\"host\":\"lab-pc\"}") != NULL);
  CHECK(strstr(json, "\"reason\":\"scan 42\"") != NULL);
  CHECK(strstr(json, "\"position\":1") != NULL);
  CHECK(strstr(json, l.token) == NULL);
  interlock_string_free(json);

  CHECK_OK(interlock_resource_status(e, "unknown", &json));
  CHECK(strstr(json, "\"locked\":false") != NULL);
  CHECK(strstr(json, "\"holders\":[]") != NULL);
  interlock_string_free(json);

  CHECK_OK(interlock_locks(e, &json));
  CHECK(json[0] == '[' && count_of(json, "\"resource\":") == 1);
  CHECK(strstr(json, l.token) == NULL);
  interlock_string_free(json);

  CHECK_OK(interlock_sessions(e, &json));
  CHECK(count_of(json, "\"id\":") == 2);
  CHECK(strstr(json, "\"leases\":[\"reactor-1\"]") != NULL);
  interlock_string_free(json);

  CHECK_OK(interlock_history(e, NULL, NULL, 0, &json));
  CHECK(strstr(json, "\"kind\":\"session_opened\"") != NULL);
  CHECK(strstr(json, "\"kind\":\"acquired\"") != NULL);
  CHECK(strstr(json, "\"kind\":\"queued\"") != NULL);
  CHECK(strstr(json, l.token) == NULL);
  interlock_string_free(json);
  CHECK_OK(interlock_history(e, "reactor-1", NULL, 1, &json));
  CHECK(count_of(json, "\"seq\":") == 1 && strstr(json, "\"kind\":\"queued\"") != NULL);
  interlock_string_free(json);
  CHECK_OK(interlock_history(e, NULL, b, 0, &json));
  CHECK(strstr(json, "\"kind\":\"acquired\"") == NULL); /* b acquired nothing */
  CHECK(strstr(json, "\"kind\":\"queued\"") != NULL);
  interlock_string_free(json);

  json = (char *)"untouched";
  CHECK_STATUS(interlock_history(e, NULL, "nope", 0, &json), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_history(e, BAD_UTF8, NULL, 0, &json), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_resource_status(e, "", &json), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_resource_status(e, NULL, &json), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STR(json, "untouched");
  CHECK_STATUS(interlock_resource_status(e, "r", NULL), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_locks(e, NULL), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_sessions(e, NULL), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_history(e, NULL, NULL, 0, NULL), INTERLOCK_INVALID_ARGUMENT);
  interlock_ticket_free(t);
  interlock_engine_free(e);
}

/* ----- subscriptions ------------------------------------------------------------ */
/* Events in order, filters, unsubscribing and replay: test_remote.c's `subscribe`, for
 * an embedded engine and a remote one. Here: what only an embedded engine shows. */

static void unsubscribe_self(void *user, const interlock_event *ev) {
  event_log *log = user;
  on_event(user, ev);
  pthread_mutex_lock(&log->mu);
  interlock_subscription *self = log->self;
  log->self = NULL;
  pthread_mutex_unlock(&log->mu);
  interlock_unsubscribe(self); /* NULL after the first time */
}

static void test_a_callback_may_unsubscribe_itself(void) {
  interlock_engine *e = new_engine();
  event_log log = EVENT_LOG_INIT;
  interlock_subscription *sub = NULL;
  pthread_mutex_lock(&log.mu);
  CHECK_OK(interlock_subscribe(e, NULL, 0, NULL, unsubscribe_self, &log, &sub));
  log.self = sub;
  pthread_mutex_unlock(&log.mu);
  char s[INTERLOCK_ID_SIZE];
  open_session(e, "a", s);
  interlock_lease l;
  CHECK_OK(interlock_acquire(e, s, "r", NULL, &l));
  CHECK_OK(interlock_release(e, "r", l.token));
  CHECK(EVENTUALLY(events_seen(&log) >= 1));
  sleep_s(0.05);
  CHECK(events_seen(&log) == 1);
  interlock_engine_free(e);
}

static void test_subscribe_validates_its_arguments(void) {
  interlock_engine *e = new_engine();
  event_log log = EVENT_LOG_INIT;
  interlock_subscription *sub = (interlock_subscription *)&log;
  const char *bad[] = {BAD_UTF8};
  const char *empty[] = {""};
  CHECK_STATUS(interlock_subscribe(e, NULL, 0, NULL, NULL, &log, &sub),
               INTERLOCK_INVALID_ARGUMENT);
  CHECK(strstr(interlock_last_error(), "callback is NULL") != NULL);
  CHECK_STATUS(interlock_subscribe(e, NULL, 2, NULL, on_event, &log, &sub),
               INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_subscribe(e, bad, 1, NULL, on_event, &log, &sub),
               INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_subscribe(e, empty, 1, NULL, on_event, &log, &sub),
               INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_subscribe(e, NULL, 0, NULL, on_event, &log, NULL),
               INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_subscribe(NULL, NULL, 0, NULL, on_event, &log, &sub),
               INTERLOCK_INVALID_ARGUMENT);
  CHECK(sub == (interlock_subscription *)&log);
  interlock_engine_free(e);
}

static void test_subscription_outlives_its_engine(void) {
  interlock_engine *e = new_engine();
  event_log log = EVENT_LOG_INIT;
  interlock_subscription *sub = NULL;
  CHECK_OK(interlock_subscribe(e, NULL, 0, NULL, on_event, &log, &sub));
  char s[INTERLOCK_ID_SIZE];
  open_session(e, "a", s);
  interlock_ticket *t = NULL;
  interlock_lease l;
  CHECK_OK(interlock_acquire(e, s, "r", NULL, &l));
  char s2[INTERLOCK_ID_SIZE];
  open_session(e, "b", s2);
  CHECK_OK(interlock_enqueue(e, s2, "r", NULL, &t, NULL));
  interlock_engine_free(e);
  int n = events_seen(&log);
  sleep_s(0.02);
  CHECK(events_seen(&log) == n); /* no callback after the engine is freed */
  interlock_lease got;
  CHECK_STATUS(interlock_ticket_wait(t, INFINITY, &got), INTERLOCK_CLOSED);
  interlock_ticket_free(t);
  interlock_unsubscribe(sub);
}

typedef struct {
  interlock_engine *engine;
  atomic_int freed;
  atomic_int status_from_callback;
} free_from_callback;

static void free_engine_on_event(void *user, const interlock_event *ev) {
  free_from_callback *f = user;
  if (strcmp(ev->kind, "acquired") != 0 || atomic_load(&f->freed)) return;
  char *json = NULL;
  /* Any function may be called from a callback... */
  atomic_store(&f->status_from_callback, (int)interlock_resource_status(f->engine, "r", &json));
  interlock_string_free(json);
  /* ...even the one that frees the engine. */
  interlock_engine_free(f->engine);
  atomic_store(&f->freed, 1);
}

static void test_a_callback_may_free_the_engine(void) {
  free_from_callback f = {.engine = new_engine()};
  atomic_init(&f.freed, 0);
  atomic_init(&f.status_from_callback, -1);
  interlock_subscription *sub = NULL;
  CHECK_OK(interlock_subscribe(f.engine, NULL, 0, NULL, free_engine_on_event, &f, &sub));
  char s[INTERLOCK_ID_SIZE];
  open_session(f.engine, "a", s);
  interlock_lease l;
  CHECK_OK(interlock_acquire(f.engine, s, "r", NULL, &l));
  CHECK(EVENTUALLY(atomic_load(&f.freed) == 1));
  CHECK(atomic_load(&f.status_from_callback) == INTERLOCK_OK);
  interlock_unsubscribe(sub);
}

/* ----- the journal ----------------------------------------------------------------- */

static void test_a_journal_keeps_locks_across_a_restart_and_trims_its_history(void) {
  char dir[] = "/tmp/interlock-c-journal-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char path[sizeof dir + 16];
  snprintf(path, sizeof path, "%s/locks.db", dir);
  interlock_config c;
  CHECK_OK(interlock_config_init(&c));
  CHECK(c.journal == NULL && c.journal_keep_rows == 1000000 && isinf(c.journal_keep_days));
  c.journal = path;
  interlock_engine *e = (interlock_engine *)&c;
  interlock_config bad = c;
  bad.journal_keep_days = 0.0;
  CHECK_STATUS(interlock_engine_new(&bad, &e), INTERLOCK_INVALID_ARGUMENT);
  bad.journal_keep_days = NAN;
  CHECK_STATUS(interlock_engine_new(&bad, &e), INTERLOCK_INVALID_ARGUMENT);
  CHECK(e == (interlock_engine *)&c);

  c.journal_keep_rows = 3;
  c.journal_keep_days = 30.0;
  CHECK_OK(interlock_engine_new(&c, &e));
  char a[INTERLOCK_ID_SIZE];
  open_session(e, "a", a);
  interlock_lease kept, l;
  CHECK_OK(interlock_acquire(e, a, "psu", NULL, &kept));
  for (int i = 0; i < 5; i++) {
    CHECK_OK(interlock_acquire(e, a, "scope", NULL, &l));
    CHECK_OK(interlock_release(e, "scope", l.token)); /* returns once written */
  }
  interlock_engine_free(e);

  CHECK_OK(interlock_engine_new(&c, &e));
  bool yes = false;
  CHECK_OK(interlock_check_fence(e, "psu", kept.fence, &yes));
  CHECK(yes);
  char *json = NULL;
  CHECK_OK(interlock_history(e, "scope", NULL, 0, &json));
  CHECK(count_of(json, "\"seq\"") <= 3); /* the newest 3 rows of the whole history */
  interlock_string_free(json);
  CHECK_OK(interlock_release(e, "psu", kept.token)); /* the token still works */
  /* A second engine on the same file is refused while this one holds it. */
  interlock_engine *other = (interlock_engine *)&c;
  CHECK_STATUS(interlock_engine_new(&c, &other), INTERLOCK_INVALID_ARGUMENT);
  CHECK(other == (interlock_engine *)&c);
  interlock_engine_free(e);
  char rm[sizeof dir + 16];
  snprintf(rm, sizeof rm, "rm -rf %s", dir);
  CHECK(system(rm) == 0);
}

int main(void) {
  RUN(test_status_codes_are_fixed_and_named);
  RUN(test_last_error_is_per_thread);
  RUN(test_config_defaults_and_bad_configs);
  RUN(test_free_accepts_null);
  RUN(test_null_engine_is_an_invalid_argument);
  RUN(test_closed_engine_says_closed);
  RUN(test_session_open_validates_its_arguments);
  RUN(test_session_open_heartbeat_close);
  RUN(test_session_ttl_expires_and_loses_its_leases);
  RUN(test_acquire_release_and_checks);
  RUN(test_acquire_validates_its_arguments);
  RUN(test_shared_and_observer_modes);
  RUN(test_wrong_and_stale_tokens);
  RUN(test_bad_input_agrees_with_python);
  RUN(test_renew_extends_a_lease);
  RUN(test_preemption_loses_the_lower_priority_lease);
  RUN(test_lease_ttl_expiry_loses_the_lease);
  RUN(test_break_stale_takes_over_a_stale_holder);
  RUN(test_acquire_many_is_all_or_nothing);
  RUN(test_tickets_queue_wait_and_cancel);
  RUN(test_cancel_wakes_a_waiting_thread);
  RUN(test_a_blocked_acquire_is_granted_on_release);
  RUN(test_deadlock_is_reported);
  RUN(test_json_queries_never_show_a_token);
  RUN(test_a_callback_may_unsubscribe_itself);
  RUN(test_subscribe_validates_its_arguments);
  RUN(test_subscription_outlives_its_engine);
  RUN(test_a_callback_may_free_the_engine);
  RUN(test_a_journal_keeps_locks_across_a_restart_and_trims_its_history);
  return summary("test_api");
}
