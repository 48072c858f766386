/* Test-only hooks of libringroute-producer. Not installed. */
#ifndef RINGROUTE_INGEST_TESTING_H
#define RINGROUTE_INGEST_TESTING_H

#ifdef __cplusplus
extern "C" {
#endif

/* Called by every emit after its claim and before its commit (NULL: none),
 * so a test can stop or kill a producer exactly there. */
__attribute__((visibility("default"))) void rr_testing_set_after_claim_hook(void (*hook)(void));

#ifdef __cplusplus
}
#endif

#endif
