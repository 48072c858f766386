// Test-only entry points of libringroute-producer. The ring is linked into the
// library with hidden symbols, so a test can only reach the library's copy of
// the hook through an exported function.
#include "ringroute/ingest/testing.h"

#include "ringroute/ring/ring.hpp"

extern "C" void rr_testing_set_after_claim_hook(void (*hook)(void)) {
  ringroute::ring::testing::set_after_claim_hook(hook);
}
