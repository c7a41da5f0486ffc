#include "util/blocking.h"

namespace wasmlet {
namespace {
thread_local InlineRunner* tls_runner = nullptr;
thread_local bool tls_blocked = false;
}  // namespace

InlineRunner* InlineRunner::Current() { return tls_runner; }
void InlineRunner::SetCurrent(InlineRunner* runner) { tls_runner = runner; }

void MarkBlocking() {
  if (tls_blocked) return;
  tls_blocked = true;
  if (tls_runner != nullptr) tls_runner->OnBlocking();
}

bool TakeBlocked() {
  bool blocked = tls_blocked;
  tls_blocked = false;
  return blocked;
}

}  // namespace wasmlet
