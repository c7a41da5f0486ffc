// Running short jobs on the thread that serves many clients, and getting out of the way when a
// job turns out to be long.
//
// The gateway's I/O threads run a request's guest themselves when its app is known to be quick
// (a hand-off to a worker thread and back costs more than the guest: futex wake-ups and context
// switches). A job that blocks (sleeps, waits for a slow client) or keeps running calls
// MarkBlocking(); the thread's InlineRunner then brings in a spare thread, so the other clients
// are served meanwhile, as Go's scheduler does for a goroutine stuck in a system call.
#pragma once

#include <functional>

namespace wasmlet {

class InlineRunner {
 public:
  virtual ~InlineRunner() = default;
  // Queues `job` on this runner's threads, to run soon after the current handler returns
  // (normally on the same thread, with no wake-up of another one).
  virtual void Defer(std::function<void()> job) = 0;
  // From a Defer() job: runs `fn` on this thread when the job ends, or has it run at once on
  // another thread if the job blocks first (MarkBlocking), so that what a quick job hands on (its
  // response) costs no wake-up, and waits for nothing when the job turns out long. False, and
  // `fn` left as it was, when not in a job or when the job already blocked.
  virtual bool AfterJob(std::function<void()>&& fn) = 0;

  // The runner of the calling thread, or null (a worker thread, a test, the main thread).
  static InlineRunner* Current();
  // Registers the calling thread with `runner` (null to leave).
  static void SetCurrent(InlineRunner* runner);

 protected:
  friend void MarkBlocking();
  // The job on the calling thread blocks or runs long: have another thread take over the
  // runner's other work. Called at most once per job (MarkBlocking keeps track).
  virtual void OnBlocking() = 0;
};

// Says that the calling thread is about to block, or has run its current job for long. Cheap
// (a thread-local check) when already said, or when the thread has no runner. Records it for
// TakeBlocked() either way.
void MarkBlocking();

// Whether MarkBlocking() was called on this thread since the last call; resets the record.
// A job runner calls it before and after each job.
bool TakeBlocked();

}  // namespace wasmlet
