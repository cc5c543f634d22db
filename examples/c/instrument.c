/* A small instrument-control program on interlock's C API.
 *
 * One engine guards a lab power supply, "psu-1". A controller thread holds it
 * exclusively while it changes the voltage; an observer thread holds it shared while it
 * reads the voltage back. The engine makes them take turns; a subscription prints what
 * happens, and a late operator who will not wait is turned away with INTERLOCK_TIMEOUT.
 *
 * Build and run: bash examples/c/run.sh (see README.md for the compiler line). */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "interlock.h"

static interlock_engine *engine;
static double voltage; /* the "instrument": written under the exclusive lock only */

/* Stops the demo on a failed call, with the engine's message. */
static void must(interlock_status s, const char *what) {
  if (s == INTERLOCK_OK) return;
  fprintf(stderr, "%s: %s: %s\n", what, interlock_status_name(s), interlock_last_error());
  exit(1);
}

static void pause_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Runs on the engine's dispatcher thread. */
static void print_event(void *user_data, const interlock_event *ev) {
  (void)user_data;
  printf("  [event %llu] %s %s\n", (unsigned long long)ev->seq, ev->kind, ev->resource);
}

static void *controller(void *arg) {
  (void)arg;
  char me[INTERLOCK_ID_SIZE];
  must(interlock_session_open(engine, "PowerSupplyController",
                              "{\"user\": \"ana\", \"app\": \"instrument-demo\"}", INFINITY,
                              NULL, me),
       "controller session");
  interlock_acquire_options o;
  interlock_acquire_options_init(&o);
  o.timeout = 5.0;
  o.reason = "voltage ramp";
  for (int step = 1; step <= 3; step++) {
    interlock_lease lease;
    must(interlock_acquire(engine, me, "psu-1", &o, &lease), "controller acquire");
    /* A driver would refuse commands from a holder whose fence is no longer current. */
    bool current = false;
    must(interlock_check_fence(engine, "psu-1", lease.fence, &current), "check_fence");
    if (current) {
      voltage = 1.5 * step;
      printf("controller: fence %llu, set %.1f V\n", (unsigned long long)lease.fence, voltage);
    }
    pause_ms(30);
    must(interlock_release(engine, "psu-1", lease.token), "controller release");
    pause_ms(10);
  }
  must(interlock_session_close(engine, me, NULL), "controller close");
  return NULL;
}

static void *observer(void *arg) {
  (void)arg;
  char me[INTERLOCK_ID_SIZE];
  must(interlock_session_open(engine, "Monitor", NULL, INFINITY, NULL, me), "observer session");
  interlock_acquire_options o;
  interlock_acquire_options_init(&o);
  o.mode = "shared";
  o.timeout = 5.0;
  for (int i = 0; i < 3; i++) {
    interlock_lease lease;
    must(interlock_acquire(engine, me, "psu-1", &o, &lease), "observer acquire");
    printf("observer:   fence %llu, read %.1f V\n", (unsigned long long)lease.fence, voltage);
    pause_ms(20);
    must(interlock_release(engine, "psu-1", lease.token), "observer release");
    pause_ms(15);
  }
  must(interlock_session_close(engine, me, NULL), "observer close");
  return NULL;
}

int main(void) {
  must(interlock_engine_new(NULL, &engine), "engine");
  const char *watched[] = {"psu-1"};
  interlock_subscription *sub = NULL;
  must(interlock_subscribe(engine, watched, 1, NULL, print_event, NULL, &sub), "subscribe");

  /* An operator holds the supply while the threads start, then steps away. */
  char operator_id[INTERLOCK_ID_SIZE];
  interlock_lease manual;
  must(interlock_session_open(engine, "Operator", NULL, INFINITY, NULL, operator_id), "operator");
  must(interlock_acquire(engine, operator_id, "psu-1", NULL, &manual), "operator acquire");

  pthread_t c, o;
  pthread_create(&c, NULL, controller, NULL);
  pthread_create(&o, NULL, observer, NULL);
  pause_ms(50);

  char *json = NULL;
  must(interlock_resource_status(engine, "psu-1", &json), "status");
  printf("status while the operator holds it: %s\n", json);
  interlock_string_free(json);
  must(interlock_release(engine, "psu-1", manual.token), "operator release");

  /* A script that will not wait is told so at once. */
  interlock_acquire_options now;
  interlock_acquire_options_init(&now);
  now.timeout = 0;
  pause_ms(5);
  interlock_lease l;
  interlock_status s = interlock_acquire(engine, operator_id, "psu-1", &now, &l);
  printf("operator, no waiting: %s\n", interlock_status_name(s));
  if (s == INTERLOCK_OK) must(interlock_release(engine, "psu-1", l.token), "operator release");

  pthread_join(c, NULL);
  pthread_join(o, NULL);
  must(interlock_history(engine, "psu-1", NULL, 3, &json), "history");
  printf("last 3 events of psu-1: %s\n", json);
  interlock_string_free(json);

  interlock_unsubscribe(sub);
  interlock_engine_free(engine);
  return 0;
}
