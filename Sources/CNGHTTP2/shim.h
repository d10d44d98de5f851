#ifndef OVERLAYD_CNGHTTP2_SHIM_H
#define OVERLAYD_CNGHTTP2_SHIM_H

#include <stdint.h>
#include <nghttp2/nghttp2.h>

/* libnghttp2 1.52 (Debian 12) exports this knob of its rapid-reset guard (CVE-2023-44487) but its
   header does not declare it (1.58 and later do; the same prototype is harmless there). Envoy ends
   many ext_proc streams with RST_STREAM after the last answer, so the default guard (a burst of
   about 1,000 resets) would send GOAWAY on a busy Envoy connection. */
void nghttp2_option_set_stream_reset_rate_limit(nghttp2_option *option, uint64_t burst, uint64_t rate);

#endif
