#ifndef OVERLAYD_CPROTOBUFC_SHIM_H
#define OVERLAYD_CPROTOBUFC_SHIM_H

/* libprotobuf-c, the runtime of the C messages in ExtProcProtoC (Debian libprotobuf-c-dev). */
#include <protobuf-c/protobuf-c.h>

#endif
