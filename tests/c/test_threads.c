/* Many threads on one engine: mutual exclusion, shared/exclusive, multi-acquire in
 * opposite orders, callbacks under load, and freeing the engine while threads are
 * blocked in it. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "check.h"

enum { THREADS = 8, ROUNDS = 40 };

static interlock_engine *engine;
static atomic_int in_critical, max_in_critical, done_rounds, failures;
static atomic_int readers, writers, bad_overlaps;

static void note_failure(const char *what, interlock_status s) {
  fprintf(stderr, "  %s: %s (%s)\n", what, interlock_status_name(s), interlock_last_error());
  atomic_fetch_add(&failures, 1);
}

static void *exclusive_worker(void *arg) {
  (void)arg;
  char s[INTERLOCK_ID_SIZE];
  open_session(engine, "worker", s);
  for (int i = 0; i < ROUNDS; i++) {
    interlock_lease l;
    interlock_status st = interlock_acquire(engine, s, "counter", NULL, &l);
    if (st != INTERLOCK_OK) {
      note_failure("acquire", st);
      continue;
    }
    int now = atomic_fetch_add(&in_critical, 1) + 1;
    int seen = atomic_load(&max_in_critical);
    while (now > seen && !atomic_compare_exchange_weak(&max_in_critical, &seen, now)) {
    }
    sched_yield();
    atomic_fetch_sub(&in_critical, 1);
    atomic_fetch_add(&done_rounds, 1);
    st = interlock_release(engine, "counter", l.token);
    if (st != INTERLOCK_OK) note_failure("release", st);
  }
  return NULL;
}

static void test_exclusive_lock_admits_one_thread_at_a_time(void) {
  engine = new_engine();
  atomic_store(&in_critical, 0);
  atomic_store(&max_in_critical, 0);
  atomic_store(&done_rounds, 0);
  atomic_store(&failures, 0);
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, exclusive_worker, NULL);
  for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  CHECK(atomic_load(&failures) == 0);
  CHECK(atomic_load(&max_in_critical) == 1);
  CHECK(atomic_load(&done_rounds) == THREADS * ROUNDS);
  interlock_engine_free(engine);
}

static void *mixed_worker(void *arg) {
  int writer = (int)(intptr_t)arg % 3 == 0;
  char s[INTERLOCK_ID_SIZE];
  open_session(engine, writer ? "controller" : "observer", s);
  interlock_acquire_options o = with_timeout(INFINITY);
  o.mode = writer ? "exclusive" : "shared";
  for (int i = 0; i < ROUNDS; i++) {
    interlock_lease l;
    interlock_status st = interlock_acquire(engine, s, "scope", &o, &l);
    if (st != INTERLOCK_OK) {
      note_failure("acquire", st);
      continue;
    }
    atomic_int *mine = writer ? &writers : &readers;
    atomic_fetch_add(mine, 1);
    int w = atomic_load(&writers), r = atomic_load(&readers);
    if (w > 1 || (w == 1 && r > 0)) atomic_fetch_add(&bad_overlaps, 1);
    sched_yield();
    atomic_fetch_sub(mine, 1);
    st = interlock_release(engine, "scope", l.token);
    if (st != INTERLOCK_OK) note_failure("release", st);
  }
  return NULL;
}

static void test_shared_holders_never_overlap_an_exclusive_one(void) {
  engine = new_engine();
  atomic_store(&failures, 0);
  atomic_store(&bad_overlaps, 0);
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, mixed_worker, (void *)(intptr_t)i);
  for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  CHECK(atomic_load(&failures) == 0);
  CHECK(atomic_load(&bad_overlaps) == 0);
  interlock_engine_free(engine);
}

static void *multi_worker(void *arg) {
  int flip = (int)(intptr_t)arg % 2;
  const char *order[2][2] = {{"motor1", "motor2"}, {"motor2", "motor1"}};
  char s[INTERLOCK_ID_SIZE];
  open_session(engine, "mover", s);
  for (int i = 0; i < ROUNDS; i++) {
    interlock_lease l[2];
    interlock_status st = interlock_acquire_many(engine, s, order[flip], 2, NULL, l);
    if (st != INTERLOCK_OK) {
      note_failure("acquire_many", st);
      continue;
    }
    if (atomic_fetch_add(&in_critical, 1) != 0) atomic_fetch_add(&bad_overlaps, 1);
    sched_yield();
    atomic_fetch_sub(&in_critical, 1);
    for (int k = 0; k < 2; k++) {
      st = interlock_release(engine, order[flip][k], l[k].token);
      if (st != INTERLOCK_OK) note_failure("release", st);
    }
  }
  return NULL;
}

static void test_multi_acquire_in_opposite_orders_never_deadlocks(void) {
  engine = new_engine();
  atomic_store(&failures, 0);
  atomic_store(&bad_overlaps, 0);
  atomic_store(&in_critical, 0);
  pthread_t t[4];
  for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, multi_worker, (void *)(intptr_t)i);
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  CHECK(atomic_load(&failures) == 0);
  CHECK(atomic_load(&bad_overlaps) == 0);
  interlock_engine_free(engine);
}

typedef struct {
  char session[INTERLOCK_ID_SIZE];
  interlock_status status;
} blocked_call;

static void *blocked_acquirer(void *arg) {
  blocked_call *c = arg;
  interlock_lease l;
  c->status = interlock_acquire(engine, c->session, "instrument", NULL, &l);
  return NULL;
}

static void test_freeing_the_engine_wakes_blocked_threads_with_closed(void) {
  engine = new_engine();
  char holder[INTERLOCK_ID_SIZE];
  open_session(engine, "holder", holder);
  interlock_lease l;
  CHECK_OK(interlock_acquire(engine, holder, "instrument", NULL, &l));
  blocked_call calls[THREADS];
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++) {
    open_session(engine, "waiter", calls[i].session);
    calls[i].status = INTERLOCK_OK;
    pthread_create(&t[i], NULL, blocked_acquirer, &calls[i]);
  }
  CHECK(EVENTUALLY(waiters_of(engine, "instrument") == THREADS));
  interlock_engine_free(engine);
  for (int i = 0; i < THREADS; i++) {
    pthread_join(t[i], NULL);
    CHECK_STATUS(calls[i].status, INTERLOCK_CLOSED);
  }
}

static void *closer(void *arg) {
  (void)arg;
  /* Frees only once the other thread is blocked inside its call. */
  if (!EVENTUALLY(waiters_of(engine, "r") == 1)) atomic_fetch_add(&failures, 1);
  interlock_engine_free(engine);
  return NULL;
}

static void test_freeing_the_engine_from_another_thread_while_blocked(void) {
  engine = new_engine();
  char a[INTERLOCK_ID_SIZE], b[INTERLOCK_ID_SIZE];
  open_session(engine, "a", a);
  open_session(engine, "b", b);
  interlock_lease l;
  CHECK_OK(interlock_acquire(engine, a, "r", NULL, &l));
  interlock_engine *e = engine;
  atomic_store(&failures, 0);
  pthread_t t;
  pthread_create(&t, NULL, closer, NULL);
  /* Blocks until `closer` frees the engine; this call holds its own reference. */
  CHECK_STATUS(interlock_acquire(e, b, "r", NULL, &l), INTERLOCK_CLOSED);
  pthread_join(t, NULL);
  CHECK(atomic_load(&failures) == 0);
}

typedef struct {
  atomic_int events;
} counter;

static void count_event(void *user, const interlock_event *ev) {
  (void)ev;
  counter *c = user;
  atomic_fetch_add(&c->events, 1);
}

static void *churn(void *arg) {
  (void)arg;
  char s[INTERLOCK_ID_SIZE];
  open_session(engine, "churn", s);
  for (int i = 0; i < ROUNDS; i++) {
    interlock_lease l;
    if (interlock_acquire(engine, s, "busy", NULL, &l) != INTERLOCK_OK) continue;
    interlock_release(engine, "busy", l.token);
  }
  return NULL;
}

static void test_subscribing_and_unsubscribing_under_load(void) {
  engine = new_engine();
  counter c = {0};
  pthread_t t[4];
  for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, churn, NULL);
  for (int i = 0; i < 50; i++) {
    interlock_subscription *sub = NULL;
    CHECK_OK(interlock_subscribe(engine, NULL, 0, NULL, count_event, &c, &sub));
    sched_yield();
    interlock_unsubscribe(sub);
    int after = atomic_load(&c.events);
    sched_yield();
    CHECK(atomic_load(&c.events) == after); /* no callback once unsubscribe returned */
  }
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  interlock_engine_free(engine);
}

int main(void) {
  RUN(test_exclusive_lock_admits_one_thread_at_a_time);
  RUN(test_shared_holders_never_overlap_an_exclusive_one);
  RUN(test_multi_acquire_in_opposite_orders_never_deadlocks);
  RUN(test_freeing_the_engine_wakes_blocked_threads_with_closed);
  RUN(test_freeing_the_engine_from_another_thread_while_blocked);
  RUN(test_subscribing_and_unsubscribing_under_load);
  return summary("test_threads");
}
