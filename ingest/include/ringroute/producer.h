/*
 * libringroute-producer: write events into a ringroute ring from any process.
 *
 * Link with `pkg-config --libs ringroute-producer`, or in CMake
 * `find_package(ringroute)` and `ringroute::producer`.
 *
 * A ring is created by the router (`ringroute run`) or `ringroute bench`;
 * producers only attach to it. Every call returns an rr_status; none blocks
 * unless the producer was opened with a wait timeout, and none throws.
 *
 * Thread-safety: an rr_producer may be used by any number of threads at once,
 * except that rr_producer_close must not run while another thread emits on
 * (or waits in) the same handle: close it once they are done. The C++
 * wrapper (producer.hpp) needs C++20.
 * No call is async-signal-safe: do not emit from a signal handler (a handler
 * interrupting an emit on the same thread would share its scratch space).
 * Allocation: rr_producer_open allocates; emitting allocates nothing, except
 * that a thread's first emit allocates its scratch (about 33 KB, freed when
 * the thread ends; RR_IO_ERROR "out of memory" if it can't), a validating
 * emit sets up its thread's JSON parser the first time and grows it for a
 * body larger than any that thread validated before (simdjson keeps several
 * times the body's size, for the thread's life), and a body that fails
 * validation is copied, and parsed again by parsers of the thread's own
 * (kept for its life, like the first), to name the byte at fault: a thread
 * that met a bad body keeps up to about twice the memory a good one of the
 * same size takes.
 */
#ifndef RINGROUTE_PRODUCER_H
#define RINGROUTE_PRODUCER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(RR_BUILDING_PRODUCER)
#define RR_API __attribute__((visibility("default")))
#else
#define RR_API
#endif

typedef enum rr_status {
  RR_OK = 0,
  RR_FULL = 1,             /* no room in the ring (after waiting, if asked to); nothing of rr_emit's event written (a batch: see rr_emit_batch) */
  RR_TOO_BIG = 2,          /* an event or field is larger than the ring or the format allows */
  RR_BAD_ARGUMENT = 3,     /* see rr_error.message: which event, which field, which byte */
  RR_NOT_READY = 4,        /* the ring does not exist yet or is still being created; or, from an emit, the
                              handle's ring was removed since it was opened (open it again), or is cut
                              short or laid out at another size_bytes (see rr_producer_open) */
  RR_VERSION_MISMATCH = 5, /* the ring was made by an incompatible version */
  RR_IO_ERROR = 6,         /* an OS call failed; rr_error.message has the reason */
  RR_CORRUPT = 7           /* the shared-memory object is not a ringroute ring, or
                              an emit found its header written by no producer */
} rr_status;

/* Zero means the default, so a zeroed rr_event is a valid event. */
typedef enum rr_severity {
  RR_SEVERITY_DEFAULT = 0, /* ok */
  RR_SEVERITY_OK = 1,
  RR_SEVERITY_WARNING = 2,
  RR_SEVERITY_CRITICAL = 3
} rr_severity;

typedef enum rr_verbosity {
  RR_VERBOSITY_DEFAULT = 0, /* info */
  RR_VERBOSITY_TRACE = 1,   /* the most verbose */
  RR_VERBOSITY_DEBUG = 2,
  RR_VERBOSITY_INFO = 3,
  RR_VERBOSITY_WARN = 4,
  RR_VERBOSITY_ERROR = 5,
  RR_VERBOSITY_FATAL = 6
} rr_verbosity;

/* A byte string; data == NULL (with size 0) means absent; NULL with a
   nonzero size is refused (RR_BAD_ARGUMENT). Fields are at most 65535 bytes. */
typedef struct rr_str {
  const char* data;
  size_t size;
} rr_str;

typedef struct rr_event {
  rr_str id;          /* present: non-empty; absent: the library assigns "{producer name}-{sequence}" */
  rr_str account_id;  /* present: non-empty */
  rr_str app_name;    /* present: non-empty */
  rr_str app_version;
  rr_str node;        /* present: non-empty; absent: the producer's node (default: the host name) */
  rr_str topic;       /* absent: derived by the router (edr.{severity}.{verbosity}.{account}.{app}) */
  rr_str stream_name;
  rr_str event_type;
  rr_str tag;
  const rr_str* account_tree; /* the account's ancestors, root first; NULL: absent */
  size_t account_tree_len;
  int64_t timestamp_ns;       /* ns since the epoch; 0: stamped at emit */
  rr_severity severity;
  rr_verbosity verbosity;
  rr_str body;                /* a JSON object; absent: {} */
} rr_event;

typedef struct rr_producer_options {
  const char* name;        /* prefix of assigned ids (at most 64 bytes); NULL: "{pid}.{open time}", then ".{n}" for the process's later opens.
                              A fixed name repeats ids across processes and restarts ("{name}-{n}" from 0 each open); a call
                              of at most 128 events takes its numbers before its checks, a longer one after them, failing
                              or not, so ids may have gaps. */
  const char* node;        /* 1 to 65535 bytes; NULL: the host name */
  int64_t wait_timeout_ns; /* how long an emit may wait for room; 0: return RR_FULL at once */
} rr_producer_options;

/* Filled on failure when the caller passes one. */
typedef struct rr_error {
  size_t event_index;  /* which event of a batch */
  size_t byte_offset;  /* within the body, for body errors */
  char message[256];   /* "event 3: body: byte 17: ..." */
} rr_error;

/* The caller built the body itself and promises it is a JSON object: the
 * library does not parse it, and the router does not check it either. */
#define RR_EMIT_BODY_TRUSTED 1u

typedef struct rr_producer rr_producer;

/* Attaches to ring `ring` (the name under /dev/shm: 1 to 255 bytes, no '/'
 * but one leading, as shm_open takes it, not "." or "..", else
 * RR_BAD_ARGUMENT). options may be NULL.
 * A handle belongs to the process that opened it: in a child of fork() it
 * refuses to emit (RR_BAD_ARGUMENT) and closing it there leaves the
 * parent's alone; the child opens its own. A handle keeps the ring it
 * attached to: if that ring is removed or renamed away (a stuck ring
 * cleared by hand; a hard link elsewhere keeps no router reading it),
 * the router that had it goes on reading it, and after that router none
 * does (the next start makes a ring anew under the name). Emits look
 * every 10 ms whether the ring was removed and no router reads it any
 * more, and then fail with RR_NOT_READY, every one after too: open the
 * ring again. What the handle wrote in those 10 ms, and what the ring
 * held unread, went with it. They look too whether the ring's file is cut
 * short (a router lays a ring out again by cutting it to nothing first) or
 * laid out at another size_bytes than the handle mapped: while it is, they
 * fail with RR_NOT_READY; once it is made anew at the handle's size, they
 * go in again. A write into a part cut off between two looks is the
 * process's death by SIGBUS, unless rr_guard_truncated_rings() was
 * called. */
RR_API rr_status rr_producer_open(const char* ring, const rr_producer_options* options, rr_producer** out,
                           rr_error* error);
RR_API void rr_producer_close(rr_producer* producer);

/* Writes every page of the ring once, up front, so that the producer's first
 * lap through the ring does not pay a page fault every 4 KiB. For producers
 * that will write a lot (a daemon, a benchmark): on a 64 MiB ring it takes a
 * few ms on bare metal and up to a few hundred under some hypervisors, more
 * than a short-lived producer of a few events would ever save. Changes no
 * byte of the ring; safe while others write. */
RR_API rr_status rr_producer_prefault(rr_producer* producer);

/* Makes a ring file cut short under this process (ftruncate by a process
 * that may write it, a hand clearing /dev/shm) a refusal rather than its
 * death. Without it, the next write into the cut part kills the process
 * with SIGBUS, as any mapped file cut short does. With it, a SIGBUS inside
 * a ring's mapping replaces that mapping with zeros: the emit that met the
 * cut returns RR_NOT_READY with *accepted 0 (its events may be lost, as is
 * what the ring held, or some read before the cut: sent again, those come
 * twice), and so does every later one on that handle: open the ring
 * again. A
 * SIGBUS anywhere else goes to the handler the process had before (or
 * kills it, as it would have). Process-wide and idempotent; the library
 * never installs a signal handler unasked. Call it after installing a
 * SIGBUS handler of your own, not before: a later sigaction replaces this
 * one. RR_IO_ERROR where sigaction refuses. */
RR_API rr_status rr_guard_truncated_rings(rr_error* error);

/* One event. */
RR_API rr_status rr_emit(rr_producer* producer, const rr_event* event, uint32_t flags, rr_error* error);

/* Many events. Every event is checked before any is written: a bad one fails
 * the whole call with RR_BAD_ARGUMENT and error->event_index. Events go in
 * with one atomic claim per run of up to 128 events that fits in a claim (an
 * eighth of the ring): a call of more is not all or nothing (other
 * producers' events may come between its runs; a process killed mid-call
 * leaves the runs it committed). On RR_FULL (or RR_NOT_READY: the ring removed, cut or resized during the wait),
 * *accepted says how many went in, in order (0 for a ring cut under a
 * guarded handle: see rr_guard_truncated_rings). Sizes are checked 128 events at
 * a time: RR_TOO_BIG for an event past the first 128 may come after earlier
 * ones went in, and *accepted says how many. Pass `accepted` to retry a
 * batch: without it, a retry of the whole batch repeats the events that
 * went in. RR_CORRUPT: the ring's tail is off a record's boundary, which
 * no producer writes (something else that may write the ring did); every
 * emit fails so, writing nothing, until the ring is made anew (the
 * router's next start after it is removed). */
RR_API rr_status rr_emit_batch(rr_producer* producer, const rr_event* events, size_t count, uint32_t flags,
                        size_t* accepted, rr_error* error);

/* "full", "bad argument", ... Static strings. */
RR_API const char* rr_status_message(rr_status status);

#ifdef __cplusplus
}
#endif

#endif /* RINGROUTE_PRODUCER_H */
