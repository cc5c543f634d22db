/* Engines over the network, in one process: an engine served on 127.0.0.1 with
 * interlock_engine_serve and reached by URL with interlock_engine_connect.
 *
 * The scenarios (sessions, acquire / release / checks, enqueue and positions, renew,
 * force release and its lost callback, status JSON, subscriptions) run twice with the
 * same checks: once on an embedded engine, once through a connected engine, with the
 * serving engine as the other side that must see the same thing. Then what only a
 * remote engine has: its options, tokens and roles, a server that goes away, a proxy. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

#include "check.h"
#include "recorders.h"

static const char RANDOM_UUID[] = "6f1c1f8e-2a4b-4c3d-9e8f-0a1b2c3d4e5f";
static const char CLIENT_TOKEN[] = "client-token-0123456789";
static const char ADMIN_TOKEN[] = "admin-token-0123456789ab";
static const char READ_TOKEN[] = "read-token-0123456789abc";

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Writes `text` to a fresh temporary file whose path goes to `path` (remove it after). */
static void temp_file(const char *text, char path[64]) {
  snprintf(path, 64, "/tmp/interlock-test-XXXXXX");
  int fd = mkstemp(path);
  if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
    fprintf(stderr, "cannot write a temporary file\n");
    exit(2);
  }
  close(fd);
}

/* ----- a served engine and an engine connected to it ---------------------------- */

typedef struct {
  interlock_engine *local;  /* the engine of this process that is served */
  interlock_server *server; /* serving it on 127.0.0.1, a free port */
  char *url;
  interlock_engine *remote; /* connected to the server by its URL */
} served;

/* Serves `local` on 127.0.0.1:0 with the tokens file `tokens` (may be NULL). */
static void serve(served *s, interlock_engine *local, const char *tokens) {
  interlock_serve_options o;
  interlock_serve_options_init(&o);
  o.bind = "127.0.0.1:0";
  o.tokens = tokens;
  s->local = local;
  s->server = NULL;
  s->url = NULL;
  s->remote = NULL;
  if (interlock_engine_serve(local, &o, &s->server) != INTERLOCK_OK ||
      interlock_server_url(s->server, &s->url) != INTERLOCK_OK) {
    fprintf(stderr, "cannot serve: %s\n", interlock_last_error());
    exit(2);
  }
}

static interlock_status connect_with(const char *url, const char *token, double session_ttl,
                                     interlock_engine **out) {
  interlock_connect_options o;
  interlock_connect_options_init(&o);
  o.token = token;
  o.session_ttl = session_ttl;
  return interlock_engine_connect(url, &o, out);
}

static void serve_and_connect(served *s) {
  serve(s, new_engine(), NULL);
  if (connect_with(s->url, NULL, 15.0, &s->remote) != INTERLOCK_OK) {
    fprintf(stderr, "cannot connect to %s: %s\n", s->url, interlock_last_error());
    exit(2);
  }
}

/* Frees what is left, in the order the header asks: connections, server, engine. */
static void unserve(served *s) {
  interlock_engine_free(s->remote);
  interlock_server_free(s->server);
  interlock_string_free(s->url);
  interlock_engine_free(s->local);
}

/* A scenario runs on `e` and looks at the outcome also through `other`: the same engine
 * when embedded; the engine the server serves when `e` is connected to it. */
typedef void (*scenario)(interlock_engine *e, interlock_engine *other);

static void embedded(scenario f) {
  interlock_engine *e = new_engine();
  f(e, e);
  interlock_engine_free(e);
}

static void remote(scenario f) {
  served s;
  serve_and_connect(&s);
  f(s.remote, s.local);
  unserve(&s);
}

/* Two tests per scenario, with the same checks: NAME_embedded and NAME_remote. */
#define BOTH(name)                                   \
  static void name##_embedded(void) { embedded(name); } \
  static void name##_remote(void) { remote(name); }

/* ----- what callbacks record ---------------------------------------------------- */

static int is_locked(interlock_engine *e, const char *resource) {
  return status_has(e, resource, "\"locked\":true");
}

/* ----- the scenarios, embedded and remote --------------------------------------- */

static void sessions(interlock_engine *e, interlock_engine *other) {
  char a[INTERLOCK_ID_SIZE], b[INTERLOCK_ID_SIZE] = "unchanged";
  CHECK_OK(interlock_session_open(e, "optimizer", "{\"user\":\"ana\"}", 60.0, NULL, a));
  CHECK(strlen(a) == 36);
  CHECK_OK(interlock_session_heartbeat(e, a));
  char *json = NULL;
  CHECK_OK(interlock_sessions(other, &json));
  CHECK(json != NULL && strstr(json, "\"name\":\"optimizer\"") != NULL);
  CHECK(json != NULL && strstr(json, "\"user\":\"ana\"") != NULL && strstr(json, a) != NULL);
  interlock_string_free(json);

  interlock_lease l;
  CHECK_OK(interlock_acquire(e, a, "reactor-1", NULL, &l));
  CHECK(is_locked(other, "reactor-1"));
  size_t released = 99;
  CHECK_OK(interlock_session_close(e, a, &released));
  CHECK(released == 1);
  CHECK(!is_locked(other, "reactor-1"));
  CHECK(!is_locked(e, "reactor-1"));
  CHECK_OK(interlock_session_close(e, a, &released));
  CHECK(released == 0);
  CHECK_STATUS(interlock_session_heartbeat(e, a), INTERLOCK_NOT_FOUND);
  CHECK_STATUS(interlock_acquire(e, a, "reactor-1", NULL, &l), INTERLOCK_NOT_FOUND);
  CHECK_STATUS(interlock_session_close(e, RANDOM_UUID, NULL), INTERLOCK_NOT_FOUND);

  /* Bad input is refused before anything is sent, and writes nothing. */
  CHECK_STATUS(interlock_session_open(e, "", NULL, INFINITY, NULL, b),
               INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_session_open(e, "x", "[1]", INFINITY, NULL, b),
               INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_session_open(e, "x", NULL, NAN, NULL, b), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_session_open(e, "x", NULL, INFINITY, "forget", b),
               INTERLOCK_INVALID_ARGUMENT);
  CHECK_STR(b, "unchanged");
  CHECK_OK(interlock_sessions(other, &json));
  CHECK(json != NULL && strcmp(json, "[]") == 0);
  interlock_string_free(json);
}
BOTH(sessions)

static void acquire_release_checks(interlock_engine *e, interlock_engine *other) {
  char a[INTERLOCK_ID_SIZE], b[INTERLOCK_ID_SIZE];
  open_session(e, "a", a);
  open_session(e, "b", b);
  interlock_acquire_options o = with_timeout(5.0);
  interlock_lease l;
  CHECK_OK(interlock_acquire(e, a, "psu", &o, &l));
  CHECK(strlen(l.token) == 36 && l.fence > 0);
  CHECK_STR(l.mode, "exclusive");
  CHECK(isinf(l.expires_at) && l.acquired_at > 1e9);

  interlock_lease other_lease;
  o = with_timeout(0);
  CHECK_STATUS(interlock_acquire(e, b, "psu", &o, &other_lease), INTERLOCK_TIMEOUT);
  o = with_timeout(0.1);
  CHECK_STATUS(interlock_acquire(e, b, "psu", &o, &other_lease), INTERLOCK_TIMEOUT);
  CHECK(waiters_of(other, "psu") == 0); /* a timed-out acquire leaves nothing queued */
  CHECK_STATUS(interlock_acquire(e, a, "psu", &o, &other_lease), INTERLOCK_ALREADY_HELD);

  bool yes = false, no = true;
  CHECK_OK(interlock_check(e, "psu", a, "control", &yes));
  CHECK(yes);
  CHECK_OK(interlock_check(e, "psu", b, NULL, &no));
  CHECK(!no);
  yes = false;
  CHECK_OK(interlock_check(other, "psu", a, "observe", &yes));
  CHECK(yes);
  CHECK_OK(interlock_check(e, "psu", RANDOM_UUID, NULL, &no));
  CHECK(!no);
  CHECK_OK(interlock_check_fence(e, "psu", l.fence, &yes));
  CHECK(yes);
  CHECK_OK(interlock_check_fence(other, "psu", l.fence + 1, &no));
  CHECK(!no);
  CHECK_STATUS(interlock_check(e, "psu", a, "drive", &no), INTERLOCK_INVALID_ARGUMENT);

  CHECK_STATUS(interlock_release(e, "psu", RANDOM_UUID), INTERLOCK_INVALID_TOKEN);
  CHECK_STATUS(interlock_release(e, "psu", "not a token"), INTERLOCK_INVALID_TOKEN);
  CHECK(is_locked(other, "psu"));
  CHECK_OK(interlock_release(e, "psu", l.token));
  CHECK(!is_locked(other, "psu"));
  CHECK_STATUS(interlock_release(e, "psu", l.token), INTERLOCK_INVALID_TOKEN);
  CHECK_OK(interlock_check(other, "psu", a, "observe", &no));
  CHECK(!no);

  interlock_lease s1, s2;
  o = with_timeout(0);
  o.mode = "shared";
  CHECK_OK(interlock_acquire(e, a, "scope", &o, &s1));
  o.mode = "observer";
  CHECK_OK(interlock_acquire(e, b, "scope", &o, &s2));
  CHECK_STR(s2.mode, "shared");
  CHECK(status_has(other, "scope", "\"mode\":\"shared\""));
  CHECK(s2.fence > s1.fence);

  const char *both[] = {"motor1", "motor2"};
  interlock_lease pair[2];
  CHECK_OK(interlock_acquire_many(e, a, both, 2, NULL, pair));
  CHECK(pair[1].fence == pair[0].fence + 1);
  CHECK(is_locked(other, "motor1") && is_locked(other, "motor2"));
  o = with_timeout(0);
  CHECK_STATUS(interlock_acquire_many(e, b, both, 2, &o, pair), INTERLOCK_TIMEOUT);

  size_t released = 0;
  CHECK_OK(interlock_session_close(e, a, &released));
  CHECK(released == 3);
  CHECK_OK(interlock_session_close(e, b, &released));
  CHECK(released == 1);
}
BOTH(acquire_release_checks)

static void enqueue_and_positions(interlock_engine *e, interlock_engine *other) {
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
  CHECK_OK(interlock_enqueue(e, c, "scope", NULL, &tc, &pos));
  CHECK(pos == 2);
  CHECK_OK(interlock_ticket_position(tc, &pos));
  CHECK(pos == 2);
  CHECK(waiters_of(other, "scope") == 2);
  CHECK(status_has(other, "scope", "\"position\":2"));
  CHECK_STATUS(interlock_ticket_wait(tb, 0.05, &got), INTERLOCK_TIMEOUT);
  CHECK_OK(interlock_ticket_position(tb, &pos));
  CHECK(pos == 1);

  CHECK_OK(interlock_release(e, "scope", held.token));
  CHECK_OK(interlock_ticket_wait(tb, 5.0, &got));
  bool yes = false;
  CHECK_OK(interlock_check(other, "scope", b, "control", &yes));
  CHECK(yes);
  CHECK_OK(interlock_ticket_position(tb, &pos));
  CHECK(pos == 0);
  CHECK_OK(interlock_ticket_position(tc, &pos));
  CHECK(pos == 1);

  CHECK_OK(interlock_ticket_cancel(tc));
  CHECK_STATUS(interlock_ticket_wait(tc, 0, &got), INTERLOCK_CANCELLED);
  CHECK_OK(interlock_ticket_position(tc, &pos));
  CHECK(pos == 0);
  CHECK(waiters_of(other, "scope") == 0);
  interlock_ticket_free(tb);
  interlock_ticket_free(tc);

  interlock_ticket *t = NULL;
  CHECK_OK(interlock_enqueue(e, c, "free", NULL, &t, &pos));
  CHECK(pos == 0);
  CHECK_OK(interlock_ticket_wait(t, 0, &got));
  CHECK(is_locked(other, "free"));
  interlock_ticket_free(t);

  /* Freeing a queued ticket withdraws it. */
  CHECK_OK(interlock_enqueue(e, c, "scope", NULL, &t, &pos));
  CHECK(pos == 1 && waiters_of(other, "scope") == 1);
  interlock_ticket_free(t);
  CHECK(EVENTUALLY(waiters_of(other, "scope") == 0));

  interlock_acquire_options o = with_timeout(0);
  t = (interlock_ticket *)&pos;
  CHECK_STATUS(interlock_enqueue(e, c, "scope", &o, &t, &pos), INTERLOCK_TIMEOUT);
  CHECK_STATUS(interlock_enqueue(e, b, "scope", NULL, &t, &pos), INTERLOCK_ALREADY_HELD);
  CHECK(t == (interlock_ticket *)&pos);
}
BOTH(enqueue_and_positions)

static void renew(interlock_engine *e, interlock_engine *other) {
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
  CHECK(status_has(other, "r", "\"remaining\":"));
  CHECK_OK(interlock_renew(e, "r", l.token, INFINITY, &expires)); /* its own TTL: 600 */
  CHECK(expires > l.acquired_at + 599.0);
  CHECK_STATUS(interlock_renew(e, "r", l.token, NAN, &expires), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_renew(e, "r", l.token, 0, &expires), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_renew(e, "r", RANDOM_UUID, 1, &expires), INTERLOCK_INVALID_TOKEN);
  CHECK(expires > l.acquired_at + 599.0);

  interlock_lease forever;
  CHECK_OK(interlock_acquire(e, a, "s", NULL, &forever));
  CHECK_OK(interlock_renew(e, "s", forever.token, INFINITY, &expires));
  CHECK(isinf(expires));
  CHECK_OK(interlock_release(e, "r", l.token));
  CHECK_STATUS(interlock_renew(e, "r", l.token, 10.0, NULL), INTERLOCK_INVALID_TOKEN);
  CHECK_OK(interlock_session_close(e, a, NULL));
}
BOTH(renew)

static void force_release(interlock_engine *e, interlock_engine *other) {
  char a[INTERLOCK_ID_SIZE], b[INTERLOCK_ID_SIZE];
  open_session(e, "a", a);
  open_session(e, "b", b);
  lost_log log = LOST_LOG_INIT;
  interlock_acquire_options o = with_timeout(0);
  o.mode = "shared";
  o.on_lost = on_lost;
  o.on_lost_user_data = &log;
  interlock_lease la, lb;
  CHECK_OK(interlock_acquire(e, a, "psu", &o, &la));
  CHECK_OK(interlock_acquire(e, b, "psu", &o, &lb));

  /* The other side takes the lock away: the holders learn it from their callback. */
  size_t n = 0;
  CHECK_OK(interlock_force_release(other, "psu", "maintenance", &n));
  CHECK(n == 2);
  CHECK(EVENTUALLY(lost_calls(&log) == 2));
  CHECK_STR(log.reason, "force_released");
  CHECK_STR(log.resource, "psu");
  CHECK(strcmp(log.session_id, a) == 0 || strcmp(log.session_id, b) == 0);
  CHECK(log.fence == la.fence || log.fence == lb.fence);
  CHECK(!log.on_caller_thread); /* callbacks run on the dispatcher thread */
  CHECK_STATUS(interlock_release(e, "psu", la.token), INTERLOCK_LOCK_LOST);
  CHECK(strstr(interlock_last_error(), "force_released") != NULL);
  CHECK_STATUS(interlock_renew(e, "psu", lb.token, INFINITY, NULL), INTERLOCK_LOCK_LOST);

  /* And through `e` itself. */
  o.mode = "exclusive";
  CHECK_OK(interlock_acquire(e, a, "psu", &o, &la));
  CHECK_OK(interlock_force_release(e, "psu", NULL, &n));
  CHECK(n == 1);
  CHECK(EVENTUALLY(lost_calls(&log) == 3));
  CHECK_STR(log.reason, "force_released");
  CHECK(log.fence == la.fence);
  CHECK_STATUS(interlock_release(e, "psu", la.token), INTERLOCK_LOCK_LOST);
  CHECK_OK(interlock_force_release(e, "psu", NULL, &n));
  CHECK(n == 0);

  char *json = NULL;
  CHECK_OK(interlock_history(e, "psu", NULL, 0, &json));
  CHECK(json != NULL && count_of(json, "\"kind\":\"force_released\"") == 3);
  CHECK(json != NULL && strstr(json, "maintenance") != NULL);
  interlock_string_free(json);

  /* The engine remembers a loss: asking again gets the same answer. */
  CHECK_STATUS(interlock_release(e, "psu", la.token), INTERLOCK_LOCK_LOST);
  CHECK_OK(interlock_force_release(e, "psu", NULL, NULL));
  CHECK_STATUS(interlock_force_release(e, "", NULL, &n), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_force_release(e, "psu", "\xff\xfe", &n), INTERLOCK_INVALID_ARGUMENT);
  /* By fence: only the lease that carries it, and only while it is current. */
  interlock_acquire_options q = with_timeout(0);
  q.mode = "shared";
  CHECK_OK(interlock_acquire(e, a, "psu", &q, &la));
  CHECK_OK(interlock_acquire(e, b, "psu", &q, &lb));
  CHECK_OK(interlock_force_release_fence(other, "psu", la.fence - 1, "stale view", &n));
  CHECK(n == 0);
  CHECK_OK(interlock_force_release_fence(other, "psu", lb.fence, "only b", &n));
  CHECK(n == 1);
  CHECK_STATUS(interlock_renew(e, "psu", lb.token, INFINITY, NULL), INTERLOCK_LOCK_LOST);
  CHECK_OK(interlock_renew(e, "psu", la.token, INFINITY, NULL));
  CHECK_OK(interlock_force_release_fence(other, "psu", lb.fence, NULL, &n));
  CHECK(n == 0);
  CHECK_OK(interlock_release(e, "psu", la.token));
  CHECK_OK(interlock_session_close(e, a, NULL));
  CHECK_OK(interlock_session_close(e, b, NULL));
  sleep_s(0.05);
  CHECK(lost_calls(&log) == 3); /* a normal end of a session is no loss */
}
BOTH(force_release)

static void json_queries(interlock_engine *e, interlock_engine *other) {
  char a[INTERLOCK_ID_SIZE];
  CHECK_OK(interlock_session_open(e, "ReactorController", "{\"host\":\"lab-pc\"}", INFINITY,
                                  NULL, a));
  interlock_acquire_options o = with_timeout(0);
  o.reason = "calibration";
  o.priority = 7;
  interlock_lease l;
  CHECK_OK(interlock_acquire(e, a, "reactor-1", &o, &l));
  char *mine = NULL, *theirs = NULL, *locks = NULL, *history = NULL, *listing = NULL;
  CHECK_OK(interlock_resource_status(e, "reactor-1", &mine));
  CHECK_OK(interlock_resource_status(other, "reactor-1", &theirs));
  CHECK_OK(interlock_locks(e, &locks));
  CHECK_OK(interlock_history(e, NULL, a, 0, &history));
  CHECK_OK(interlock_sessions(e, &listing));
  const char *json[] = {mine, theirs, locks};
  for (int i = 0; i < 3; i++) {
    const char *j = json[i];
    CHECK(j != NULL && strstr(j, "\"resource\":\"reactor-1\"") != NULL);
    CHECK(j != NULL && strstr(j, "\"locked\":true") != NULL);
    CHECK(j != NULL && strstr(j, "\"mode\":\"exclusive\"") != NULL);
    CHECK(j != NULL && strstr(j, "\"session_name\":\"ReactorController\"") != NULL);
    CHECK(j != NULL && strstr(j, "\"host\":\"lab-pc\"") != NULL);
    CHECK(j != NULL && strstr(j, "\"reason\":\"calibration\"") != NULL);
    CHECK(j != NULL && strstr(j, "\"priority\":7") != NULL);
    CHECK(j != NULL && strstr(j, "\"waiters\":[]") != NULL);
    CHECK(j != NULL && strstr(j, a) != NULL);
  }
  CHECK(locks != NULL && locks[0] == '[' && count_of(locks, "\"resource\":") == 1);
  CHECK(history != NULL && strstr(history, "\"kind\":\"acquired\"") != NULL);
  CHECK(listing != NULL && strstr(listing, "\"leases\":[\"reactor-1\"]") != NULL);
  const char *all[] = {mine, theirs, locks, history, listing};
  for (int i = 0; i < 5; i++) CHECK(all[i] != NULL && strstr(all[i], l.token) == NULL);
  for (int i = 0; i < 5; i++) interlock_string_free((char *)all[i]);

  CHECK_OK(interlock_resource_status(e, "nobody-has-this", &mine));
  CHECK(mine != NULL && strstr(mine, "\"locked\":false") != NULL);
  CHECK(mine != NULL && strstr(mine, "\"holders\":[]") != NULL);
  interlock_string_free(mine);
  mine = (char *)RANDOM_UUID;
  CHECK_STATUS(interlock_resource_status(e, "", &mine), INTERLOCK_INVALID_ARGUMENT);
  CHECK(mine == RANDOM_UUID);
  CHECK_OK(interlock_session_close(e, a, NULL));
}
BOTH(json_queries)

static void subscribe(interlock_engine *e, interlock_engine *other) {
  event_log all = EVENT_LOG_INIT, only_psu = EVENT_LOG_INIT;
  interlock_subscription *sub_all = NULL, *sub_psu = NULL;
  CHECK_OK(interlock_subscribe(e, NULL, 0, NULL, on_event, &all, &sub_all));
  const char *filter[] = {"psu"};
  CHECK_OK(interlock_subscribe(e, filter, 1, NULL, on_event, &only_psu, &sub_psu));
  char s[INTERLOCK_ID_SIZE];
  open_session(e, "subscriber test", s);
  interlock_lease lp, lq;
  CHECK_OK(interlock_acquire(e, s, "psu", NULL, &lp));
  CHECK_OK(interlock_acquire(e, s, "scope", NULL, &lq));
  CHECK_OK(interlock_release(e, "psu", lp.token));
  CHECK(EVENTUALLY(events_seen(&all) == 4)); /* session_opened, acquired x2, released */
  CHECK(EVENTUALLY(events_seen(&only_psu) == 2));
  CHECK_STR(all.kinds[0], "session_opened");
  CHECK_STR(all.resources[0], "-");
  CHECK_STR(all.kinds[1], "acquired");
  CHECK_STR(all.resources[1], "psu");
  CHECK_STR(all.kinds[2], "acquired");
  CHECK_STR(all.resources[2], "scope");
  CHECK_STR(all.kinds[3], "released");
  CHECK_STR(only_psu.kinds[0], "acquired");
  CHECK_STR(only_psu.kinds[1], "released");
  CHECK(all.seq_increasing && all.json_ok && only_psu.seq_increasing);

  /* What the other side does shows up too. */
  char t[INTERLOCK_ID_SIZE];
  open_session(other, "other side", t);
  interlock_lease lo;
  CHECK_OK(interlock_acquire(other, t, "psu", NULL, &lo));
  CHECK(EVENTUALLY(events_seen(&only_psu) == 3));
  CHECK_STR(only_psu.kinds[2], "acquired");

  /* Unsubscribed: no more calls once interlock_unsubscribe has returned. */
  interlock_unsubscribe(sub_psu);
  CHECK_OK(interlock_release(other, "psu", lo.token));
  CHECK(EVENTUALLY(events_seen(&all) == 7)); /* + session_opened, acquired, released */
  CHECK(events_seen(&only_psu) == 3);

  /* A subscription from a past seq replays what came after it. */
  event_log replay = EVENT_LOG_INIT;
  interlock_subscription *sub_replay = NULL;
  uint64_t since = all.first_seq;
  CHECK_OK(interlock_subscribe(e, NULL, 0, &since, on_event, &replay, &sub_replay));
  CHECK(EVENTUALLY(events_seen(&replay) == 6));
  CHECK_STR(replay.kinds[0], "acquired");
  CHECK(replay.first_seq == since + 1 && replay.last_seq == all.last_seq);
  interlock_unsubscribe(sub_replay);
  interlock_unsubscribe(sub_all);
  CHECK_OK(interlock_session_close(e, s, NULL));
  CHECK_OK(interlock_session_close(other, t, NULL));
}
BOTH(subscribe)

/* ----- only remote engines ------------------------------------------------------ */

static void test_connect_options_and_bad_input(void) {
  interlock_connect_options o;
  CHECK_OK(interlock_connect_options_init(&o));
  CHECK(o.token == NULL && o.ca_file == NULL);
  CHECK(o.session_ttl == 15.0 && o.connect_timeout == 5.0);
  CHECK_STATUS(interlock_connect_options_init(NULL), INTERLOCK_INVALID_ARGUMENT);

  interlock_engine *e = (interlock_engine *)&o; /* a sentinel that must stay */
  const char *url = "http://127.0.0.1:9";
  CHECK_STATUS(interlock_engine_connect(NULL, &o, &e), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_engine_connect(url, &o, NULL), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_engine_connect("127.0.0.1:9", &o, &e), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_engine_connect("ftp://127.0.0.1:9", &o, &e),
               INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_engine_connect("\xff\xfe", &o, &e), INTERLOCK_INVALID_ARGUMENT);
  interlock_connect_options bad = o;
  bad.session_ttl = INFINITY; /* a remote session always has a TTL */
  CHECK_STATUS(interlock_engine_connect(url, &bad, &e), INTERLOCK_INVALID_ARGUMENT);
  CHECK(strstr(interlock_last_error(), "session_ttl") != NULL);
  bad.session_ttl = 0;
  CHECK_STATUS(interlock_engine_connect(url, &bad, &e), INTERLOCK_INVALID_ARGUMENT);
  bad.session_ttl = NAN;
  CHECK_STATUS(interlock_engine_connect(url, &bad, &e), INTERLOCK_INVALID_ARGUMENT);
  bad = o;
  bad.connect_timeout = -1;
  CHECK_STATUS(interlock_engine_connect(url, &bad, &e), INTERLOCK_INVALID_ARGUMENT);
  bad.connect_timeout = INFINITY;
  CHECK_STATUS(interlock_engine_connect(url, &bad, &e), INTERLOCK_INVALID_ARGUMENT);
  bad = o;
  bad.token = "a token\nwith a newline";
  CHECK_STATUS(interlock_engine_connect(url, &bad, &e), INTERLOCK_INVALID_ARGUMENT);
  bad = o;
  bad.ca_file = "/nonexistent/ca.pem";
  CHECK_STATUS(interlock_engine_connect("https://127.0.0.1:9", &bad, &e),
               INTERLOCK_INVALID_ARGUMENT);
  CHECK(e == (interlock_engine *)&o);

  /* Nothing listens there: refused at once, not after the timeout. */
  served s;
  serve(&s, new_engine(), NULL);
  char url_gone[64];
  snprintf(url_gone, sizeof url_gone, "%s", s.url);
  unserve(&s);
  double t0 = now_s();
  CHECK_STATUS(interlock_engine_connect(url_gone, NULL, &e), INTERLOCK_CONNECTION_LOST);
  CHECK(now_s() - t0 < 4.0);
  CHECK(e == (interlock_engine *)&o);
}

static void test_serve_options_and_bad_input(void) {
  interlock_serve_options o;
  CHECK_OK(interlock_serve_options_init(&o));
  CHECK_STR(o.bind, "127.0.0.1:7411");
  CHECK(o.tokens == NULL && o.tls_cert == NULL && o.tls_key == NULL);
  CHECK(o.max_wait == 300.0 && o.session_ttl == 15.0);
  CHECK_STATUS(interlock_serve_options_init(NULL), INTERLOCK_INVALID_ARGUMENT);

  interlock_engine *e = new_engine();
  interlock_server *srv = (interlock_server *)&o; /* a sentinel that must stay */
  o.bind = "127.0.0.1:0";
  CHECK_STATUS(interlock_engine_serve(NULL, &o, &srv), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_engine_serve(e, &o, NULL), INTERLOCK_INVALID_ARGUMENT);
  interlock_serve_options bad = o;
  bad.bind = NULL;
  CHECK_STATUS(interlock_engine_serve(e, &bad, &srv), INTERLOCK_INVALID_ARGUMENT);
  bad.bind = "127.0.0.1:99999";
  CHECK_STATUS(interlock_engine_serve(e, &bad, &srv), INTERLOCK_INVALID_ARGUMENT);
  bad.bind = "127.0.0.1";
  CHECK_STATUS(interlock_engine_serve(e, &bad, &srv), INTERLOCK_INVALID_ARGUMENT);

  /* Without tokens only loopback; the message says how to give tokens. */
  bad.bind = "0.0.0.0:0";
  CHECK_STATUS(interlock_engine_serve(e, &bad, &srv), INTERLOCK_INVALID_ARGUMENT);
  CHECK(strstr(interlock_last_error(), "interlock_serve_options.tokens") != NULL);
  CHECK(strstr(interlock_last_error(), "ROLE TOKEN") != NULL);
  bad.bind = "[::]:0";
  CHECK_STATUS(interlock_engine_serve(e, &bad, &srv), INTERLOCK_INVALID_ARGUMENT);

  bad = o;
  bad.tokens = "/nonexistent/tokens";
  CHECK_STATUS(interlock_engine_serve(e, &bad, &srv), INTERLOCK_INVALID_ARGUMENT);
  char empty[64], malformed[64], short_token[64];
  temp_file("# no tokens here\n\n", empty);
  temp_file("owner 0123456789abcdef0123\n", malformed);
  temp_file("admin short\n", short_token);
  bad.tokens = empty;
  CHECK_STATUS(interlock_engine_serve(e, &bad, &srv), INTERLOCK_INVALID_ARGUMENT);
  CHECK(strstr(interlock_last_error(), "holds no token") != NULL);
  bad.tokens = malformed;
  CHECK_STATUS(interlock_engine_serve(e, &bad, &srv), INTERLOCK_INVALID_ARGUMENT);
  CHECK(strstr(interlock_last_error(), "line 1") != NULL);
  CHECK(strstr(interlock_last_error(), "0123456789abcdef") == NULL); /* never the token */
  bad.tokens = short_token;
  CHECK_STATUS(interlock_engine_serve(e, &bad, &srv), INTERLOCK_INVALID_ARGUMENT);
  remove(empty);
  remove(malformed);
  remove(short_token);

  bad = o;
  bad.tls_cert = "/nonexistent/cert.pem";
  CHECK_STATUS(interlock_engine_serve(e, &bad, &srv), INTERLOCK_INVALID_ARGUMENT);
  CHECK(strstr(interlock_last_error(), "tls_key") != NULL);
  bad.tls_key = "/nonexistent/key.pem";
  CHECK_STATUS(interlock_engine_serve(e, &bad, &srv), INTERLOCK_INVALID_ARGUMENT);
  bad = o;
  bad.max_wait = NAN;
  CHECK_STATUS(interlock_engine_serve(e, &bad, &srv), INTERLOCK_INVALID_ARGUMENT);
  bad.max_wait = INFINITY;
  CHECK_STATUS(interlock_engine_serve(e, &bad, &srv), INTERLOCK_INVALID_ARGUMENT);
  bad = o;
  bad.session_ttl = 0;
  CHECK_STATUS(interlock_engine_serve(e, &bad, &srv), INTERLOCK_INVALID_ARGUMENT);
  CHECK(srv == (interlock_server *)&o);

  /* A port in use is refused, and the server that has it goes on. */
  served s;
  serve(&s, e, NULL);
  CHECK(strncmp(s.url, "http://127.0.0.1:", 17) == 0 && atoi(s.url + 17) > 0);
  bad = o;
  bad.bind = s.url + 7;
  CHECK_STATUS(interlock_engine_serve(e, &bad, &srv), INTERLOCK_INVALID_ARGUMENT);
  CHECK(srv == (interlock_server *)&o);
  interlock_engine *r = NULL;
  CHECK_OK(interlock_engine_connect(s.url, NULL, &r));
  s.remote = r;

  char *url = (char *)RANDOM_UUID;
  CHECK_STATUS(interlock_server_url(NULL, &url), INTERLOCK_INVALID_ARGUMENT);
  CHECK_STATUS(interlock_server_url(s.server, NULL), INTERLOCK_INVALID_ARGUMENT);
  CHECK(url == RANDOM_UUID);
  interlock_server_free(NULL);
  unserve(&s);

  /* A closed engine is not served. */
  e = new_engine();
  interlock_engine_close(e);
  CHECK_STATUS(interlock_engine_serve(e, &o, &srv), INTERLOCK_CLOSED);
  CHECK(srv == (interlock_server *)&o);
  interlock_engine_free(e);
}

static void test_tokens_and_roles(void) {
  char tokens[64];
  char text[256];
  snprintf(text, sizeof text, "# role token\nclient %s\nadmin %s\n\nread %s\n", CLIENT_TOKEN,
           ADMIN_TOKEN, READ_TOKEN);
  temp_file(text, tokens);
  served s;
  serve(&s, new_engine(), tokens);
  remove(tokens); /* read by interlock_engine_serve only */

  interlock_engine *e = (interlock_engine *)&s; /* a sentinel that must stay */
  CHECK_STATUS(connect_with(s.url, "wrong-token-0123456789", 15.0, &e),
               INTERLOCK_PERMISSION_DENIED);
  CHECK_STATUS(connect_with(s.url, NULL, 15.0, &e), INTERLOCK_PERMISSION_DENIED);
  CHECK(e == (interlock_engine *)&s);

  interlock_engine *client = NULL, *admin = NULL, *reader = NULL;
  CHECK_OK(connect_with(s.url, CLIENT_TOKEN, 15.0, &client));
  CHECK_OK(connect_with(s.url, ADMIN_TOKEN, 15.0, &admin));
  CHECK_OK(connect_with(s.url, READ_TOKEN, 15.0, &reader));

  char c[INTERLOCK_ID_SIZE], r[INTERLOCK_ID_SIZE] = "unchanged";
  open_session(client, "client", c);
  interlock_lease l;
  CHECK_OK(interlock_acquire(client, c, "psu", NULL, &l));
  CHECK(is_locked(reader, "psu")); /* read may look */
  CHECK_STATUS(interlock_session_open(reader, "reader", NULL, INFINITY, NULL, r),
               INTERLOCK_PERMISSION_DENIED);
  CHECK_STR(r, "unchanged");
  CHECK_STATUS(interlock_force_release(client, "psu", NULL, NULL), INTERLOCK_PERMISSION_DENIED);
  CHECK_STATUS(interlock_session_close(admin, RANDOM_UUID, NULL), INTERLOCK_NOT_FOUND);
  /* Another client's session is not this connection's to act as. */
  char a[INTERLOCK_ID_SIZE];
  open_session(admin, "admin", a);
  CHECK_STATUS(interlock_session_heartbeat(client, a), INTERLOCK_PERMISSION_DENIED);
  CHECK(is_locked(s.local, "psu"));
  size_t n = 0;
  CHECK_OK(interlock_force_release(admin, "psu", "admin may", &n));
  CHECK(n == 1);
  CHECK_STATUS(interlock_release(client, "psu", l.token), INTERLOCK_LOCK_LOST);

  interlock_engine_free(reader);
  interlock_engine_free(admin);
  interlock_engine_free(client);
  unserve(&s);
}

typedef struct {
  interlock_engine *engine;
  const char *session;
  atomic_int started, returned;
  interlock_status status;
} blocked_acquire;

static void *acquire_forever(void *arg) {
  blocked_acquire *b = arg;
  interlock_lease l;
  atomic_store(&b->started, 1);
  b->status = interlock_acquire(b->engine, b->session, "psu", NULL, &l);
  atomic_store(&b->returned, 1);
  return NULL;
}

static void test_a_server_that_goes_away(void) {
  served s;
  serve(&s, new_engine(), NULL);
  CHECK_OK(connect_with(s.url, NULL, 1.0, &s.remote));
  char a[INTERLOCK_ID_SIZE], b[INTERLOCK_ID_SIZE], local[INTERLOCK_ID_SIZE];
  open_session(s.remote, "a", a);
  open_session(s.remote, "b", b);
  open_session(s.local, "local", local);
  lost_log log = LOST_LOG_INIT;
  interlock_acquire_options o = with_timeout(0);
  o.on_lost = on_lost;
  o.on_lost_user_data = &log;
  interlock_lease l;
  CHECK_OK(interlock_acquire(s.remote, a, "psu", &o, &l));
  /* b waits for psu, forever, on a thread of its own. */
  blocked_acquire w = {.engine = s.remote, .session = b};
  pthread_t t;
  pthread_create(&t, NULL, acquire_forever, &w);
  CHECK(EVENTUALLY(waiters_of(s.local, "psu") == 1));

  double t0 = now_s();
  interlock_server_free(s.server);
  s.server = NULL;
  fprintf(stderr, "  interlock_server_free took %.3f s\n", now_s() - t0);

  /* The wait in flight fails, and so does every call: no hang, no crash. */
  CHECK(EVENTUALLY(atomic_load(&w.returned) == 1));
  CHECK(w.status == INTERLOCK_CONNECTION_LOST);
  pthread_join(t, NULL);
  char *json = (char *)RANDOM_UUID;
  char id[INTERLOCK_ID_SIZE] = "unchanged";
  CHECK_STATUS(interlock_resource_status(s.remote, "psu", &json), INTERLOCK_CONNECTION_LOST);
  CHECK(json == RANDOM_UUID);
  CHECK_STATUS(interlock_session_open(s.remote, "c", NULL, INFINITY, NULL, id),
               INTERLOCK_CONNECTION_LOST);
  CHECK_STR(id, "unchanged");
  CHECK_STATUS(interlock_session_heartbeat(s.remote, a), INTERLOCK_CONNECTION_LOST);
  CHECK_STATUS(interlock_release(s.remote, "psu", l.token), INTERLOCK_CONNECTION_LOST);
  interlock_lease l2;
  CHECK_STATUS(interlock_acquire(s.remote, a, "scope", NULL, &l2), INTERLOCK_CONNECTION_LOST);
  interlock_subscription *sub = NULL;
  event_log events = EVENT_LOG_INIT;
  CHECK_STATUS(interlock_subscribe(s.remote, NULL, 0, NULL, on_event, &events, &sub),
               INTERLOCK_CONNECTION_LOST);
  CHECK(sub == NULL);

  /* With no heartbeat acknowledged for its session's TTL, the holder learns it lost the
   * lease, before the server (whose clock started later) could give it to anyone. */
  CHECK(EVENTUALLY(lost_calls(&log) == 1));
  CHECK_STR(log.reason, "connection_lost");
  CHECK(log.fence == l.fence);
  CHECK(EVENTUALLY(!is_locked(s.local, "psu"))); /* and then the server's session expired */

  /* The engine still works in its own process; only its server is gone. */
  interlock_lease mine;
  CHECK_OK(interlock_acquire(s.local, local, "psu", NULL, &mine));

  t0 = now_s();
  interlock_engine_free(s.remote);
  s.remote = NULL;
  double took = now_s() - t0;
  fprintf(stderr, "  interlock_engine_free of the disconnected engine took %.3f s\n", took);
  CHECK(took < 5.0);
  unserve(&s);
}

static void test_freeing_a_connected_engine_ends_its_sessions(void) {
  served s;
  serve_and_connect(&s);
  char a[INTERLOCK_ID_SIZE];
  open_session(s.remote, "a", a);
  interlock_lease l;
  CHECK_OK(interlock_acquire(s.remote, a, "psu", NULL, &l));
  CHECK(is_locked(s.local, "psu"));
  interlock_engine_free(s.remote); /* its locks go at once, not after its TTL */
  s.remote = NULL;
  CHECK(!is_locked(s.local, "psu"));
  char *json = NULL;
  CHECK_OK(interlock_sessions(s.local, &json));
  CHECK(json != NULL && strcmp(json, "[]") == 0);
  interlock_string_free(json);
  unserve(&s);
}

static void test_freeing_a_connected_engine_wakes_its_waiters(void) {
  served s;
  serve_and_connect(&s);
  char a[INTERLOCK_ID_SIZE], b[INTERLOCK_ID_SIZE];
  open_session(s.remote, "a", a);
  open_session(s.remote, "b", b);
  interlock_lease l;
  CHECK_OK(interlock_acquire(s.remote, a, "psu", NULL, &l));
  blocked_acquire w = {.engine = s.remote, .session = b};
  pthread_t t;
  pthread_create(&t, NULL, acquire_forever, &w);
  CHECK(EVENTUALLY(waiters_of(s.local, "psu") == 1));
  interlock_engine_free(s.remote); /* as for an embedded engine: the wait says CLOSED */
  s.remote = NULL;
  pthread_join(t, NULL);
  CHECK(w.status == INTERLOCK_CLOSED);
  CHECK(!is_locked(s.local, "psu") && waiters_of(s.local, "psu") == 0);
  unserve(&s);
}

static void test_closing_a_connected_engine(void) {
  served s;
  serve_and_connect(&s);
  char a[INTERLOCK_ID_SIZE];
  open_session(s.remote, "a", a);
  CHECK_OK(interlock_engine_close(s.remote));
  CHECK_OK(interlock_engine_close(s.remote));
  char *json = NULL;
  CHECK_STATUS(interlock_locks(s.remote, &json), INTERLOCK_CLOSED);
  CHECK(json == NULL);
  CHECK_OK(interlock_sessions(s.local, &json)); /* the server still serves */
  CHECK(json != NULL && strcmp(json, "[]") == 0);
  interlock_string_free(json);
  unserve(&s);
}

static void test_a_connected_engine_can_be_served_again(void) {
  served s;
  serve_and_connect(&s);
  served proxy;
  serve(&proxy, s.remote, NULL);
  CHECK_OK(interlock_engine_connect(proxy.url, NULL, &proxy.remote));
  char a[INTERLOCK_ID_SIZE];
  open_session(proxy.remote, "two hops away", a);
  interlock_lease l;
  CHECK_OK(interlock_acquire(proxy.remote, a, "psu", NULL, &l));
  CHECK(status_has(s.local, "psu", "\"session_name\":\"two hops away\""));
  CHECK_OK(interlock_release(proxy.remote, "psu", l.token));
  CHECK(!is_locked(s.local, "psu"));
  interlock_engine_free(proxy.remote);
  interlock_server_free(proxy.server);
  interlock_string_free(proxy.url);
  unserve(&s);
}

int main(void) {
  RUN(sessions_embedded);
  RUN(sessions_remote);
  RUN(acquire_release_checks_embedded);
  RUN(acquire_release_checks_remote);
  RUN(enqueue_and_positions_embedded);
  RUN(enqueue_and_positions_remote);
  RUN(renew_embedded);
  RUN(renew_remote);
  RUN(force_release_embedded);
  RUN(force_release_remote);
  RUN(json_queries_embedded);
  RUN(json_queries_remote);
  RUN(subscribe_embedded);
  RUN(subscribe_remote);
  RUN(test_connect_options_and_bad_input);
  RUN(test_serve_options_and_bad_input);
  RUN(test_tokens_and_roles);
  RUN(test_a_server_that_goes_away);
  RUN(test_freeing_a_connected_engine_ends_its_sessions);
  RUN(test_freeing_a_connected_engine_wakes_its_waiters);
  RUN(test_closing_a_connected_engine);
  RUN(test_a_connected_engine_can_be_served_again);
  return summary("test_remote");
}
