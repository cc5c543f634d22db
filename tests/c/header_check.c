/* The header compiles on its own as strict C99 and as C++ (run.sh builds this file both
 * ways), and its typedefs are usable as documented. */
#include "interlock.h"

int main(void) {
  interlock_status ok = INTERLOCK_OK;
  interlock_lease lease;
  lease.token[INTERLOCK_ID_SIZE - 1] = '\0';
  interlock_engine *engine = 0;
  interlock_event_callback on_event = 0;
  interlock_lost_callback on_lost = 0;
  interlock_server *server = 0;
  interlock_connect_options connect_options;
  interlock_serve_options serve_options;
  connect_options.token = 0;
  serve_options.bind = "127.0.0.1:0";
  (void)engine;
  (void)server;
  (void)connect_options;
  (void)serve_options;
  (void)on_event;
  (void)on_lost;
  return (int)ok + lease.token[INTERLOCK_ID_SIZE - 1];
}
